-- Calls, SQLite dialect (same tables and columns as mysql/0003_calls.sql).

-- Numbers (DIDs) that carriers deliver to the switch, and the account each rings.
CREATE TABLE dids (
    -- E.164 without the leading +.
    number     TEXT    PRIMARY KEY NOT NULL,
    login      TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
CREATE INDEX dids_login ON dids (login);

-- Call records, written when a call ends. Times are Unix milliseconds.
CREATE TABLE cdrs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Call-ID of the caller's leg.
    call_id      TEXT    NOT NULL,
    -- Login of the caller, or the number a gateway presented.
    caller       TEXT    NOT NULL,
    -- Login called, or the number sent to the gateway.
    callee       TEXT    NOT NULL,
    -- Gateway the call went out through (OFFNET) or came in from (DID).
    gateway      TEXT,
    started_at   INTEGER NOT NULL,
    answered_at  INTEGER,
    ended_at     INTEGER NOT NULL,
    -- Whole seconds from answer to end; 0 when not answered.
    duration     INTEGER NOT NULL,
    -- answered, busy, no-answer, cancelled, failed.
    disposition  TEXT    NOT NULL,
    -- Final SIP status the caller got.
    code         INTEGER NOT NULL,
    -- Who or what ended an answered call: caller, callee, session-timer, max-duration, ack-timeout.
    end_reason   TEXT
);
CREATE INDEX cdrs_started ON cdrs (started_at);
CREATE INDEX cdrs_caller ON cdrs (caller, started_at);
