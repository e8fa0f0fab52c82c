-- Resumable uploads (tus) and idempotency keys.

CREATE TABLE uploads (
    id            UUID PRIMARY KEY,
    owner_id      UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    length        BIGINT NOT NULL,
    upload_offset BIGINT NOT NULL DEFAULT 0,
    metadata      TEXT,
    lock_token    UUID,
    lock_until    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX uploads_expiry ON uploads(expires_at);

CREATE TABLE upload_chunks (
    key       TEXT PRIMARY KEY,
    upload_id UUID NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    start     BIGINT NOT NULL,
    length    BIGINT NOT NULL
);
CREATE UNIQUE INDEX upload_chunks_order ON upload_chunks(upload_id, start);

CREATE TABLE idempotency_keys (
    scope_key   TEXT PRIMARY KEY,
    fingerprint BYTEA NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    status      INTEGER,
    headers     TEXT,
    body        BYTEA,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);
