-- Suspension (PRODUCT.md §3 Safety): `suspended_at` is set when a moderator
-- suspends the account and cleared when one reinstates it. While it is set the
-- account cannot log in and every read hides what it made.
ALTER TABLE users ADD COLUMN suspended_at TIMESTAMPTZ;
CREATE INDEX users_suspended ON users (suspended_at) WHERE suspended_at IS NOT NULL;
