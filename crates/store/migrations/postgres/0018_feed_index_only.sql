-- A feed page reads each post's place (count, id), expiry, author and version
-- from this index alone: an index-only scan visits no table page for a post
-- whose page the visibility map marks all-visible. Its rendering comes from
-- the renderings the node keeps, by post and version
-- (src/postgres/renderings.rs), and only those a node has not kept are read
-- from the table. Before, every post on a page cost a visit to its table page
-- (a buffer lookup, pin and lock), half of PostgreSQL's work for the page
-- (BENCHMARKS.md, "Deep pages from the index alone").
DROP INDEX posts_feed;
CREATE INDEX posts_feed ON posts (comment_count, id) INCLUDE (expires_at, author_id, version)
    WHERE status = 'ready';
