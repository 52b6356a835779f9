-- Presence, address books and voicemail counts, SQLite dialect (same tables
-- and columns as mysql/0004_presence.sql).

-- Every user's address book (SPEC 5): one row per number of an entry, the
-- number normalised to E.164 without '+' (SPEC 4). The buddy list is the
-- entries whose number is a service user's phone (or login).
CREATE TABLE contacts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner      TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    contact_id TEXT    NOT NULL,
    name       TEXT,
    number     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (owner, contact_id, number)
);
CREATE INDEX contacts_number ON contacts (number);

-- RFC 3903 publications: one per device document, found by its entity tag.
CREATE TABLE presence_publications (
    etag       TEXT    PRIMARY KEY NOT NULL,
    login      TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    -- 'open' or 'closed' (PIDF basic status of the device's document).
    basic      TEXT    NOT NULL,
    note       TEXT,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX presence_publications_login ON presence_publications (login);

-- RFC 6665 subscriptions the switch is the notifier of, kept so that a
-- restart keeps them. The dialog is (call_id, local_tag, remote_tag).
CREATE TABLE presence_subscriptions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event       TEXT    NOT NULL,
    watcher     TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    -- Login watched, or the owner of the buddy list when is_list = 1.
    resource    TEXT    NOT NULL,
    is_list     INTEGER NOT NULL DEFAULT 0,
    -- The SUBSCRIBE's Request-URI: the From of our NOTIFYs.
    resource_uri TEXT   NOT NULL,
    call_id     TEXT    NOT NULL,
    local_tag   TEXT    NOT NULL,
    -- The watcher's From header value (with its tag): the To of our NOTIFYs.
    remote      TEXT    NOT NULL,
    remote_tag  TEXT    NOT NULL,
    -- The watcher's Contact: Request-URI of our NOTIFYs.
    target      TEXT    NOT NULL,
    event_id    TEXT,
    -- NOTIFY CSeq values below this were or may have been used.
    cseq_floor  INTEGER NOT NULL,
    -- The flow the SUBSCRIBE came on (NAT): NOTIFYs go back over it.
    transport   TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    local       TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (call_id, local_tag)
);
CREATE INDEX presence_subscriptions_resource ON presence_subscriptions (resource);

-- Voice messages left for a user (the voicemail IVR writes them); MWI
-- (RFC 3842) counts the heard and unheard ones.
CREATE TABLE voicemail_messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    login        TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    caller       TEXT    NOT NULL,
    caller_name  TEXT,
    duration_ms  INTEGER NOT NULL DEFAULT 0,
    recording    TEXT,
    heard        INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);
CREATE INDEX voicemail_messages_login ON voicemail_messages (login, heard);
