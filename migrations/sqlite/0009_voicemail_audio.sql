-- Voicemail recordings and greetings, SQLite dialect (same tables as
-- mysql/0009_voicemail_audio.sql).
--
-- The audio lives in the database, beside its metadata: a deposit is one
-- transaction (message row + audio), so a message that was acknowledged
-- survives a crash with its audio, and every node sharing the database sees
-- it. A file store would need its own replication across nodes and a
-- two-step write. Recordings are WAV (8 kHz mono 16-bit PCM, 16 KB/s):
-- the two-minute maximum is under 2 MB.

-- The audio of one message; its row goes with the message.
CREATE TABLE voicemail_audio (
    message_id INTEGER PRIMARY KEY NOT NULL
               REFERENCES voicemail_messages (id) ON DELETE CASCADE,
    wav        BLOB    NOT NULL
);

-- A user's own greeting (none: the default prompt plays).
CREATE TABLE voicemail_greetings (
    login       TEXT    PRIMARY KEY NOT NULL
                REFERENCES accounts (login) ON DELETE CASCADE,
    duration_ms INTEGER NOT NULL,
    wav         BLOB    NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- "Call me" sign-up (the code read out by a voice call): the newest call's
-- state (pending, answered, failed); NULL when the newest code went by SMS.
ALTER TABLE phone_signups ADD COLUMN call_status TEXT;

-- Voicemail to e-mail: one row per message to mail, written in the deposit's
-- transaction and deleted once the SMTP server took it. Any node may claim
-- a due row (next_at moves forward first), and a mailer outage only delays.
CREATE TABLE voicemail_email_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  INTEGER NOT NULL REFERENCES voicemail_messages (id) ON DELETE CASCADE,
    address     TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    last_error  TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX voicemail_email_outbox_due ON voicemail_email_outbox (next_at);
