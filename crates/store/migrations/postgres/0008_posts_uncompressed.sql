-- A post row (its stored rendering, newest comments and caption) is read on
-- every feed page and post view. Past ~2 kB PostgreSQL compresses the widest
-- values of a row in place (pglz), and every read then decompresses them:
-- measured as the largest single cost of a deep feed page. Rows stay as they
-- are up to the largest target PostgreSQL allows (8160 bytes); longer ones
-- are still compressed or moved out of line. Applies to rows as they are
-- written from now on (`imagegram migrate` writes every row anew).
ALTER TABLE posts SET (toast_tuple_target = 8160);
