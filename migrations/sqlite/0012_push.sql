-- Push notifications, SQLite dialect (same tables as mysql/0012_push.sql).
--
-- `push_tokens`: one row per device instance, provider and kind. A device
-- registers its token through the client API or in its REGISTER Contact
-- (RFC 8599 `pn-provider`, `pn-prid`, `pn-param`). `instance` is the
-- device's `+sip.instance` (or the id the app gives the API); `provider`
-- names a `[push.providers.NAME]` guest; `kind` is `voip` (iOS PushKit:
-- incoming calls only) or `alert` (everything else, and calls when the
-- device has no VoIP token). A token belongs to one account: registering
-- it for another login moves it (the app was signed in by someone else).
CREATE TABLE push_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    login      TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    instance   TEXT    NOT NULL,
    provider   TEXT    NOT NULL,
    token      TEXT    NOT NULL,
    app        TEXT    NOT NULL DEFAULT '',
    sandbox    INTEGER NOT NULL DEFAULT 0,
    kind       TEXT    NOT NULL CHECK (kind IN ('voip', 'alert')),
    source     TEXT    NOT NULL CHECK (source IN ('api', 'register')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (login, instance, kind),
    UNIQUE (provider, token)
);

-- The push outbox: one row per notification and device token ("accepted
-- means stored": a crash between the event and the push loses nothing).
-- Claimed with a conditional UPDATE and a lease, like `sms_messages`.
-- `notification` is the JSON of what happened (kind, caller, excerpt ...).
CREATE TABLE push_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id        INTEGER NOT NULL REFERENCES push_tokens (id) ON DELETE CASCADE,
    login           TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    notification    TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'sending', 'delivered', 'failed')),
    detail          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX push_outbox_due ON push_outbox (status, next_attempt_at);
CREATE INDEX push_outbox_login ON push_outbox (login, id);
