-- Answering rules by caller ID, SQLite dialect (same table as
-- mysql/0011_answering_rules.sql).
--
-- A user's rules say what happens to calls from given callers, before the
-- usual ringing and voicemail: `ring` (as usual: ring, then voicemail if
-- enabled), `ring-only` (ring; never voicemail), `voicemail` (straight to
-- voicemail without ringing), `reject` (declined at once). `caller` is a
-- login or number, or a prefix ending in `*` (`*` alone: everyone else);
-- the exact caller wins, then the longest prefix. A rule may carry its own
-- greeting (8 kHz mono WAV), played instead of the user's when a call it
-- matches reaches voicemail.
CREATE TABLE answering_rules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    login      TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    caller     TEXT    NOT NULL,
    action     TEXT    NOT NULL CHECK (action IN ('ring', 'ring-only', 'voicemail', 'reject')),
    greeting   BLOB,
    created_at INTEGER NOT NULL,
    UNIQUE (login, caller)
);
