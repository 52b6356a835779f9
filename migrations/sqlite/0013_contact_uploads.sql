-- Address-book uploads (SPEC §5), SQLite dialect (same tables as
-- mysql/0013_contact_uploads.sql).
--
-- An app uploads its book in chunks under a token; when it says it is done
-- the book is applied (replacing the stored one for a full sync, or merged)
-- and discovery runs: which of the numbers belong to service users. The app
-- polls the token until the status is `done`; `result` is then the JSON list
-- of (contact id, login, phone). Uploads are kept a day.
CREATE TABLE contact_uploads (
    token        TEXT    PRIMARY KEY NOT NULL,
    owner        TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    replace_book INTEGER NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('open', 'pending', 'done')),
    entries      INTEGER NOT NULL DEFAULT 0,
    result       BLOB,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX contact_uploads_owner ON contact_uploads (owner);
CREATE INDEX contact_uploads_status ON contact_uploads (status, updated_at);

-- The chunks received so far, one row per number (normalised).
CREATE TABLE contact_upload_entries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token      TEXT    NOT NULL REFERENCES contact_uploads (token) ON DELETE CASCADE,
    contact_id TEXT    NOT NULL,
    name       TEXT,
    number     TEXT    NOT NULL
);
CREATE INDEX contact_upload_entries_token ON contact_upload_entries (token);
