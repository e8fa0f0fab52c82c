-- Blocks (PRODUCT.md §3 Safety): the blocker never sees the blocked user's
-- posts or comments, and the blocked user cannot comment on the blocker's posts.
CREATE TABLE blocks (
    id         UUID PRIMARY KEY,          -- UUIDv7; the order `migrate` copies in
    blocker_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (blocker_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);
