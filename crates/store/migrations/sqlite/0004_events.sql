-- Notifications: a durable, ordered log per recipient, written in the same
-- transaction as the change that causes each event. A user's events are
-- numbered by a counter on the user row, so their order is their commit order.
ALTER TABLE users ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
CREATE TABLE events (
    key        TEXT PRIMARY KEY,                -- "<user id>:<seq, zero-padded>"
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL,                   -- JSON
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX events_by_user ON events(user_id, seq);
CREATE INDEX events_age ON events(created_at);
