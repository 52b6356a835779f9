-- Client API state, SQLite dialect (same tables and columns as mysql/0005_api.sql).

-- Phone sign-up requests (SPEC 3), one per phone number and device.
CREATE TABLE phone_signups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- E.164 without the leading +.
    phone           TEXT    NOT NULL,
    udid            TEXT    NOT NULL,
    os              TEXT    NOT NULL,
    -- The 4-digit code. Kept in clear: 10,000 values are no secret against a
    -- hash, the 3-attempt limit is what protects it.
    code            TEXT    NOT NULL,
    sms_left        INTEGER NOT NULL,
    attempts_left   INTEGER NOT NULL,
    last_sms_at     INTEGER NOT NULL,
    -- The newest code SMS (sms_messages.id), for the delivery-status API.
    sms_id          INTEGER,
    -- Set when the right code was given: the device's account.
    completed_login TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (phone, udid)
);

-- Every SMS the switch sends through a provider guest: sign-up codes and
-- OFFNET messages (handed over from sms_outbox). Any node may claim a row.
CREATE TABLE sms_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Provider guest name (a key of [sms.providers]).
    provider        TEXT    NOT NULL,
    number          TEXT    NOT NULL,
    sender          TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    -- 'signup-code' or 'offnet'.
    purpose         TEXT    NOT NULL,
    -- 'queued', 'sending' (claimed until next_attempt_at), 'sent' (accepted by
    -- the vendor, waiting for a report), 'delivered', 'failed'.
    status          TEXT    NOT NULL,
    provider_id     TEXT,
    detail          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX sms_messages_due ON sms_messages (status, next_attempt_at);
CREATE INDEX sms_messages_provider_id ON sms_messages (provider, provider_id);
