-- Data exports (PRODUCT.md §3 Accounts): a zip of what an account made, built
-- in the background (a builder holds `lease_until`), kept until `expires_at`.
CREATE TABLE exports (
    id          BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
    lease_until INTEGER,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX exports_by_user ON exports(user_id);
CREATE INDEX exports_to_build ON exports(status, lease_until);
CREATE INDEX exports_expiry ON exports(expires_at);
