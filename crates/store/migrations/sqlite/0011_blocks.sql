-- Blocks (PRODUCT.md §3 Safety): the blocker never sees the blocked user's
-- posts or comments, and the blocked user cannot comment on the blocker's posts.
CREATE TABLE blocks (
    id         BLOB PRIMARY KEY,          -- UUIDv7; the order `migrate` copies in
    blocker_id BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    UNIQUE (blocker_id, blocked_id)
) STRICT;
CREATE INDEX blocks_blocked ON blocks(blocked_id);
