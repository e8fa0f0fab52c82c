-- Reports and the moderation audit log (PRODUCT.md §3 Safety).
CREATE TABLE reports (
    id               BLOB PRIMARY KEY,
    reporter_id      BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    target_type      TEXT NOT NULL CHECK (target_type IN ('post', 'comment')),
    target_id        BLOB NOT NULL,       -- no foreign key: a report outlives its target
    reason           TEXT NOT NULL,
    note             TEXT NOT NULL,
    snapshot         TEXT NOT NULL,       -- JSON: the target when it was reported
    status           TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    resolution       TEXT,
    resolved_at      INTEGER,
    created_at       INTEGER NOT NULL
) STRICT;
-- One open report per reporter and target.
CREATE UNIQUE INDEX reports_one_open ON reports(reporter_id, target_type, target_id) WHERE status = 'open';
-- The queue: a status's reports by target.
CREATE INDEX reports_queue ON reports(status, target_type, target_id);

CREATE TABLE moderation_audit (
    id         BLOB PRIMARY KEY,          -- UUIDv7: newest last
    moderator  TEXT NOT NULL,             -- username when acting; it outlives the account
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,             -- JSON
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
