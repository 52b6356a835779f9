-- Presence across cluster nodes, SQLite dialect (same columns as
-- mysql/0023_presence_shares.sql). Each node writes, per user whose devices
-- it holds, its share of the user's presence when that share changes: the
-- other nodes read the rows changed since their last look and notify their
-- own watchers of the user (cluster mode only; one node needs none of it).
CREATE TABLE presence_shares (
    login      TEXT    NOT NULL,
    -- The node (`sip:HOST:PORT`) whose devices this share describes.
    node       TEXT    NOT NULL,
    -- 1 when a device of the user on that node is open.
    online     INTEGER NOT NULL,
    -- The newest note its devices published, and when (Unix seconds).
    note       TEXT    NULL,
    note_at    INTEGER NOT NULL,
    -- 1 when a device there registered with push parameters (RFC 8599).
    push       INTEGER NOT NULL,
    -- Unix milliseconds of the change: what the other nodes look for.
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (login, node)
);
CREATE INDEX presence_shares_updated ON presence_shares (updated_at);
