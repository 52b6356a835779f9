-- SIP core state, SQLite dialect (same tables and columns as mysql/0002_sip.sql).

-- Registrations. One row per device binding: keyed by +sip.instance and reg-id
-- when the device sends them (RFC 5626), else by the Contact URI.
CREATE TABLE bindings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    login       TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    binding_key TEXT    NOT NULL,
    contact     TEXT    NOT NULL,
    instance    TEXT,
    reg_id      INTEGER,
    call_id     TEXT    NOT NULL,
    cseq        INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    -- How to reach the device through its NAT: the transport and source address
    -- the REGISTER came from, and the local listener it arrived on.
    transport   TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    local       TEXT    NOT NULL,
    -- SIP address of the switch node that holds the device's connection.
    node        TEXT    NOT NULL,
    user_agent  TEXT,
    updated_at  INTEGER NOT NULL,
    UNIQUE (login, binding_key)
);
CREATE INDEX bindings_expires ON bindings (expires_at);

-- Every MESSAGE the switch accepted, with its delivery status.
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sender       TEXT    NOT NULL,
    sender_name  TEXT,
    recipient    TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    -- 'deferred' (waiting for a device), 'delivered' (a device answered 2xx),
    -- 'failed' (every device refused it).
    status       TEXT    NOT NULL,
    -- 1 for system commands (SPEC 5): deferred like any message, never pushed.
    is_system    INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX messages_recipient_status ON messages (recipient, status, id);

-- OFFNET messages waiting for the SMS provider extension point.
CREATE TABLE sms_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sender       TEXT    NOT NULL,
    number       TEXT    NOT NULL,
    gateway      TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    status       TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX sms_outbox_status ON sms_outbox (status, id);
