-- Images banned by moderators (PRODUCT.md §3 Safety): the SHA-256 of an
-- original's bytes; the same bytes uploaded again are refused.
CREATE TABLE banned_images (
    sha256     BYTEA PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL
);
