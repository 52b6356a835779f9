-- Avatars, SQLite dialect (same table and columns as mysql/0006_avatars.sql).

-- One resized picture per account. Kept in the database rather than as files
-- under the data directory: several nodes share one database (cluster mode),
-- so any node serves any avatar, and backups hold them with the profiles.
-- Resizing bounds a row to a few hundred KB.
CREATE TABLE avatars (
    login        TEXT    PRIMARY KEY NOT NULL
                 REFERENCES accounts (login) ON DELETE CASCADE,
    -- image/jpeg or image/png (what the switch re-encoded it as).
    content_type TEXT    NOT NULL,
    image        BLOB    NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    -- Unix seconds; profiles.avatar_updated_at carries the same value.
    updated_at   INTEGER NOT NULL
);

