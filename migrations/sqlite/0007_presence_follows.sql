-- Presence that follows registrations, connections and address books,
-- SQLite dialect (same tables and columns as mysql/0006_presence_follows.sql).

-- The flow a publication last came over. A device's document lives as long
-- as the device is there: it goes when the binding registered from the same
-- flow is removed (un-REGISTER, expiry) and does not count while its TCP/TLS
-- connection is closed. NULL for rows written before this column existed.
ALTER TABLE presence_publications ADD COLUMN transport TEXT;
ALTER TABLE presence_publications ADD COLUMN source TEXT;

-- Every change of an address book, so that each node can apply it to the
-- subscriptions it serves: buddy lists are sent again, and a watcher removed
-- from a user's book loses its subscription to that user. Rows are purged
-- after a while; the id orders the changes.
CREATE TABLE contact_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner      TEXT    NOT NULL,
    number     TEXT    NOT NULL,
    -- 1 when the number left the book, 0 when it came in.
    removed    INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX contact_changes_created ON contact_changes (created_at);
