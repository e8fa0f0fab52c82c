-- Imagegram's PostgreSQL schema: the same model as the embedded SQLite schema.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,   -- always lowercase: usernames are case-insensitive
    password_hash TEXT NOT NULL,          -- Argon2id PHC string
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,         -- SHA-256 of the bearer token
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE posts (
    id              UUID PRIMARY KEY,
    author_id       UUID NOT NULL REFERENCES users(id),
    caption         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
    failure_reason  TEXT,
    filter          TEXT NOT NULL,
    dither_levels   SMALLINT,
    original_key    TEXT NOT NULL,
    original_format TEXT NOT NULL,
    image_key       TEXT,
    image_width     INTEGER,
    image_height    INTEGER,
    blurhash        TEXT,
    comment_count   BIGINT NOT NULL DEFAULT 0 CHECK (comment_count >= 0),
    -- Denormalised copy of the 2 newest comments, rewritten in every comment's transaction.
    last_comments   JSONB NOT NULL DEFAULT '[]',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ
);
-- PostgreSQL seeks a row-value comparison on the whole key, scanning backwards for "desc".
CREATE INDEX posts_feed ON posts (comment_count, id) INCLUDE (expires_at) WHERE status = 'ready';
CREATE INDEX posts_by_author ON posts (author_id, id) INCLUDE (expires_at) WHERE status = 'ready';

CREATE TABLE comments (
    id         UUID PRIMARY KEY,
    post_id    UUID NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    author_id  UUID NOT NULL REFERENCES users(id),
    body       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX comments_by_post ON comments (post_id, id DESC);

-- Image jobs; a claimed job's run_at is its lease expiry.
CREATE TABLE jobs (
    id          UUID PRIMARY KEY,
    post_id     UUID NOT NULL UNIQUE REFERENCES posts(id) ON DELETE CASCADE,
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_at      TIMESTAMPTZ NOT NULL,
    lease_token UUID,
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_runnable ON jobs (run_at);

CREATE TABLE blob_deletions (
    key        TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL
);

