-- Resumable uploads (tus) and idempotency keys.

CREATE TABLE uploads (
    id            BLOB PRIMARY KEY,
    owner_id      BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    length        INTEGER NOT NULL,
    upload_offset INTEGER NOT NULL DEFAULT 0,   -- bytes durably stored and acknowledged
    metadata      TEXT,                         -- Upload-Metadata, as sent
    lock_token    BLOB,                         -- the PATCH appending right now, if any
    lock_until    INTEGER,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX uploads_expiry ON uploads(expires_at);

-- The bytes of an upload, as one blob per PATCH (the bytes it delivered), in order.
CREATE TABLE upload_chunks (
    key       TEXT PRIMARY KEY,                 -- blob key
    upload_id BLOB NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    start     INTEGER NOT NULL,
    length    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX upload_chunks_order ON upload_chunks(upload_id, start);

CREATE TABLE idempotency_keys (
    scope_key   TEXT PRIMARY KEY,               -- "<scope> <Idempotency-Key>"; scope is the user or client
    fingerprint BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    status      INTEGER,
    headers     TEXT,                           -- JSON [[name, value], …] of the replayed headers
    body        BLOB,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);
