-- Room on each page for a second version of its rows: taking and giving
-- back a refresh lease changes no indexed column, so with free space on the
-- page PostgreSQL writes it as a heap-only tuple (HOT) and touches none of
-- the table's indexes. Applies to pages written from now on; an existing
-- table gains the room as its rows are rewritten (or after VACUUM FULL).
ALTER TABLE social_accounts SET (fillfactor = 70);
