-- Switch nodes sharing this database (cluster mode), SQLite dialect (same
-- columns as mysql/0022_nodes.sql). Each node writes its row at start and
-- refreshes `seen_at` every heartbeat; a node whose row is older than the
-- configured `cluster.dead_after_ms` (or gone: a graceful stop deletes it)
-- is dead, and the bindings it holds are not forwarded to.
CREATE TABLE nodes (
    -- The node's SIP address as bindings name it in their `node` column
    -- (`sip:HOST:PORT`): where other nodes forward requests for its users.
    node       TEXT    PRIMARY KEY NOT NULL,
    -- The operator's name for it (logs, the admin view).
    name       TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    -- Unix milliseconds of its last heartbeat.
    seen_at    INTEGER NOT NULL
);
