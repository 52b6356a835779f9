-- File sharing (SPEC §7), SQLite dialect (same tables as mysql/0016_files.sql).
--
-- A client uploads a file with its recipients and gets an id; it then sends
-- them a MESSAGE with a `file` system command naming the id. The sender and
-- the recipients (no one else) download it by id; a thumbnail of a picture
-- does not count as a download. When every recipient has downloaded it, or
-- it expires, the file is deleted.
--
-- The bytes are in the database, like the seed's storage schema and like
-- voicemail and recordings: a file the switch said it took survives a crash,
-- every node sees it at once, one backup holds everything. They are stored in
-- chunks written as the upload streams in, so neither the upload nor a
-- download ever holds the whole file in memory, and no row is huge.
CREATE TABLE shared_files (
    id           TEXT    PRIMARY KEY NOT NULL,
    sender       TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    content_type TEXT    NOT NULL,
    -- As the sender named it (optional, shown to recipients).
    name         TEXT,
    -- Bytes; counted while the upload goes on.
    size         INTEGER NOT NULL DEFAULT 0,
    -- 0 while the upload streams in: not downloadable, and swept if its
    -- node died during it.
    complete     INTEGER NOT NULL DEFAULT 0,
    -- Unix seconds.
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX shared_files_expiry ON shared_files (expires_at);
CREATE INDEX shared_files_incomplete ON shared_files (complete, created_at);

CREATE TABLE shared_file_recipients (
    file_id       TEXT    NOT NULL REFERENCES shared_files (id) ON DELETE CASCADE,
    login         TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    -- Unix seconds of the recipient's first whole download.
    downloaded_at INTEGER,
    PRIMARY KEY (file_id, login)
);

-- The bytes in order of seq (1 MiB each but the last).
CREATE TABLE shared_file_chunks (
    file_id TEXT    NOT NULL REFERENCES shared_files (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    data    BLOB    NOT NULL,
    PRIMARY KEY (file_id, seq)
);
