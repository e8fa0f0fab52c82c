-- Account deletion (PRODUCT.md §3 Accounts): `deleted_at` is set the moment a
-- deletion is asked for; from then on every read hides what the account made,
-- while the purge removes it in bounded steps and finally the row.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;
CREATE INDEX users_being_deleted ON users(deleted_at) WHERE deleted_at IS NOT NULL;
-- The purge and the data export find an account's comments (in a stable
-- order), posts and uploads by author.
CREATE INDEX comments_by_author ON comments(author_id, post_id, id);
CREATE INDEX posts_by_any_author ON posts(author_id);
CREATE INDEX uploads_by_owner ON uploads(owner_id);
