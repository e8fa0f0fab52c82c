-- Every change to a post's representation bumps its version: ETags derive from
-- it, and If-Match compares it in the same statement as the update.
ALTER TABLE posts ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX posts_expiry ON posts(expires_at) WHERE expires_at IS NOT NULL;
