-- Imagegram's embedded schema. Times are Unix milliseconds (UTC); ids are UUIDv7 bytes,
-- so "newest first" is "id descending".

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,   -- always lowercase: usernames are case-insensitive
    password_hash TEXT NOT NULL,          -- Argon2id PHC string
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,          -- SHA-256 of the bearer token; the token itself is never stored
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE posts (
    id              BLOB PRIMARY KEY,
    author_id       BLOB NOT NULL REFERENCES users(id),
    caption         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
    failure_reason  TEXT,
    filter          TEXT NOT NULL,
    dither_levels   INTEGER,
    original_key    TEXT NOT NULL,
    original_format TEXT NOT NULL,
    image_key       TEXT,
    image_width     INTEGER,
    image_height    INTEGER,
    blurhash        TEXT,
    comment_count   INTEGER NOT NULL DEFAULT 0 CHECK (comment_count >= 0),
    -- Denormalised copy of the 2 newest comments (JSON), rewritten in the same
    -- transaction as every comment insert/delete so it is always exact.
    last_comments   TEXT NOT NULL DEFAULT '[]',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    expires_at      INTEGER
) STRICT;
-- The feed: keyset seeks on (comment_count, id); expires_at makes the expiry filter index-only.
CREATE INDEX posts_feed ON posts(comment_count DESC, id DESC, expires_at) WHERE status = 'ready';
CREATE INDEX posts_by_author ON posts(author_id, id DESC, expires_at) WHERE status = 'ready';

CREATE TABLE comments (
    id         BLOB PRIMARY KEY,
    post_id    BLOB NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    author_id  BLOB NOT NULL REFERENCES users(id),
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX comments_by_post ON comments(post_id, id DESC);

-- Image-processing jobs. A claimed job's run_at moves to its lease expiry, so
-- "runnable" is one index range: run_at <= now.
CREATE TABLE jobs (
    id          BLOB PRIMARY KEY,
    post_id     BLOB NOT NULL UNIQUE REFERENCES posts(id) ON DELETE CASCADE,
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_at      INTEGER NOT NULL,
    lease_token BLOB,
    last_error  TEXT,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX jobs_runnable ON jobs(run_at);

-- Blobs whose rows are gone, deleted after the transaction that orphaned them commits.
CREATE TABLE blob_deletions (
    key        TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
