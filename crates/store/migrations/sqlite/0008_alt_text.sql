-- Alt text: what a post's image shows, for people who cannot see it (empty:
-- none given). Stored renderings of the previous format are re-made when read.
ALTER TABLE posts ADD COLUMN alt_text TEXT NOT NULL DEFAULT '';
