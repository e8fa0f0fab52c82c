-- Data exports (PRODUCT.md §3 Accounts): a zip of what an account made, built
-- in the background (a builder holds `lease_until`), kept until `expires_at`.
CREATE TABLE exports (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
    lease_until TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX exports_by_user ON exports (user_id);
CREATE INDEX exports_to_build ON exports (status, lease_until);
CREATE INDEX exports_expiry ON exports (expires_at);
