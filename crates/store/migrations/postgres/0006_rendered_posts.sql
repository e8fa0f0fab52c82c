-- Each post's JSON as clients see it, rewritten in the same transaction as every
-- change to the post or its newest comments, so that feed pages are assembled
-- from stored text. rendered_version names the format it was written in; a
-- rendering of another format, or none (rows from before this migration), is
-- not served: that post is rendered from its columns when read.
ALTER TABLE posts ADD COLUMN rendered TEXT;
ALTER TABLE posts ADD COLUMN rendered_version BIGINT;
