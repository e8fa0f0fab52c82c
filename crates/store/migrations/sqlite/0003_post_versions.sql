-- Every change to a post's representation bumps its version: ETags derive from
-- it, and If-Match compares it in the same statement as the update.
ALTER TABLE posts ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
-- The sweeper finds expired posts by this.
CREATE INDEX posts_expiry ON posts(expires_at) WHERE expires_at IS NOT NULL;
