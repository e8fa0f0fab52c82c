-- Events become a rowid table: each new event is appended at the end instead of
-- being inserted in the middle of its user's range (large rows there meant a
-- random leaf page and frequent half-full splits for every comment). The unique
-- key "<user id>:<seq, zero-padded>" sorts by user, then seq, so its index also
-- serves a user's events in order, and the separate (user_id, seq) index,
-- which held the same order again, is gone.
CREATE TABLE events_appended (
    key        TEXT NOT NULL UNIQUE,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL,                   -- JSON
    created_at INTEGER NOT NULL
) STRICT;
INSERT INTO events_appended (key, user_id, seq, kind, data, created_at)
    SELECT key, user_id, seq, kind, data, created_at FROM events ORDER BY created_at, key;
DROP TABLE events;
ALTER TABLE events_appended RENAME TO events;
CREATE INDEX events_age ON events(created_at);
