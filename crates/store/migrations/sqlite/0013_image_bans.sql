-- Images banned by moderators (PRODUCT.md §3 Safety): the SHA-256 of an
-- original's bytes; the same bytes uploaded again are refused.
CREATE TABLE banned_images (
    sha256     BLOB PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
