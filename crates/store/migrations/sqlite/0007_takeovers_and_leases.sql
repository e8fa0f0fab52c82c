-- A PATCH whose client went silent must give its upload up to the client's next
-- request, on any node: that request sets release_wanted, and the holder commits
-- what it received and lets go (see service/uploads.rs).
ALTER TABLE uploads ADD COLUMN release_wanted INTEGER NOT NULL DEFAULT 0;

-- An in-flight Idempotency-Key claim is a lease that its request renews while it
-- runs; a claim whose node died is taken over once the lease lapses (seconds, not
-- minutes). Existing claims get a lease that has already lapsed.
ALTER TABLE idempotency_keys ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;

-- Sessions expire after a period unused (--session-ttl-days); use is recorded
-- at most hourly, so reads stay reads.
ALTER TABLE sessions ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET last_used_at = created_at;
CREATE INDEX sessions_last_used ON sessions(last_used_at);
