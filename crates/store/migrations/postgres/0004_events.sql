-- Notifications: a durable, ordered log per recipient, written in the same
-- transaction as the change that causes each event. The counter on the user row
-- is taken under that row's lock, so a user's events commit in seq order.
ALTER TABLE users ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
CREATE TABLE events (
    key        TEXT PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX events_by_user ON events(user_id, seq);
CREATE INDEX events_age ON events(created_at);
