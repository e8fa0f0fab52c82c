-- What `imagegram migrate` set aside while it filled an empty table: the
-- table's secondary indexes and foreign keys, each with the statement that
-- builds it again. A bulk load builds an index once, at the end, instead of
-- maintaining it row by row (PostgreSQL's "Populating a Database" advice).
-- Rows stay here until the copy's end rebuilds them, so an interrupted copy's
-- next run still does; a server refuses a database that has any.
CREATE TABLE migrate_set_aside (
    table_name TEXT NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('index', 'foreign key')),
    restore    TEXT NOT NULL,
    PRIMARY KEY (table_name, name)
);
