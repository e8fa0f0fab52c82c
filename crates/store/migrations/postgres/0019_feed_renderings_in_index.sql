-- A feed page's renderings come from the posts_feed index itself: with them
-- in the index, a page of 20 posts is an index-only scan over a few
-- neighbouring leaf pages, where reading each rendering from the table was a
-- visit to 20 table pages scattered over the whole table (BENCHMARKS.md,
-- "Renderings in the feed index"). At 1M posts read uniformly those visits
-- were most of PostgreSQL's work for a page.
--
-- A B-tree entry holds at most 2,704 bytes, so only renderings of up to
-- 2,400 bytes (the other columns take under 100) live in `rendered`; a
-- longer one (a long caption, long comments) is set aside in
-- `rendered_long`, which the index does not hold, by the trigger below, so
-- that no writer, `COPY` included, can make a post's write fail on the
-- index. Readers take `COALESCE(rendered, rendered_long)`: the trigger keeps
-- at most one of the two set.
--
-- The rendering column the index holds is a new one, and every rendering is
-- moved into it here: a row's old version, which the index build below still
-- sees inside this transaction, then holds none, so no long rendering of a
-- row's old version can reach the index either. (Moving only the long ones
-- out of the old column would leave their old versions, with the long value,
-- to be indexed.) This rewrites every post once: the table carries a dead
-- copy of each until (auto)vacuum, and index-only scans visit the table
-- until the visibility map is set again (BENCHMARKS.md has the cost).
ALTER TABLE posts RENAME COLUMN rendered TO rendered_long;
ALTER TABLE posts ADD COLUMN rendered TEXT;

-- An index column takes its storage from the table's column, and a value
-- over ~510 bytes in an EXTENDED column is compressed inside the index entry
-- (pglz): every page read would then decompress 20 renderings. EXTERNAL
-- stores them as they are (in the table, too: rows stay inline up to
-- toast_tuple_target, migration 0008).
ALTER TABLE posts ALTER COLUMN rendered SET STORAGE EXTERNAL;

UPDATE posts SET rendered = rendered_long, rendered_long = NULL
    WHERE octet_length(rendered_long) <= 2400;

CREATE FUNCTION posts_rendering_sized() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF octet_length(NEW.rendered) > 2400 THEN
        NEW.rendered_long := NEW.rendered;
        NEW.rendered := NULL;
    ELSE
        NEW.rendered_long := NULL;
    END IF;
    RETURN NEW;
END
$$;

-- Runs only for a rendering that is long or replaces a long one: the WHEN is
-- evaluated in the executor, and most writes never call the function.
CREATE TRIGGER posts_rendering_sized
    BEFORE INSERT OR UPDATE OF rendered ON posts
    FOR EACH ROW
    WHEN (octet_length(NEW.rendered) > 2400 OR NEW.rendered_long IS NOT NULL)
    EXECUTE FUNCTION posts_rendering_sized();

DROP INDEX posts_feed;
CREATE INDEX posts_feed ON posts (comment_count, id)
    INCLUDE (expires_at, author_id, rendered_version, rendered)
    WHERE status = 'ready';
