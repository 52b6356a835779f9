-- Adding a phone number to an existing account (issue 18), SQLite dialect
-- (same table, column and index as mysql/0015_phone_add.sql).
--
-- The account proves the number with the phone sign-up's code, rules and
-- table: its requests are phone_signups rows whose for_login names the
-- account adding the number ('' for a sign-up). The key becomes (phone,
-- udid, for_login), so an account's requests neither spend nor reveal a
-- sign-up's code and allowance, nor another account's.
--
-- SQLite cannot drop a table's UNIQUE constraint: the table is rebuilt, rows
-- and ids kept (nothing references it).
CREATE TABLE phone_signups_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    phone           TEXT    NOT NULL,
    udid            TEXT    NOT NULL,
    os              TEXT    NOT NULL,
    code            TEXT    NOT NULL,
    sms_left        INTEGER NOT NULL,
    attempts_left   INTEGER NOT NULL,
    last_sms_at     INTEGER NOT NULL,
    sms_id          INTEGER,
    completed_login TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    call_status     TEXT,
    for_login       TEXT    NOT NULL DEFAULT ''
);

INSERT INTO phone_signups_new (id, phone, udid, os, code, sms_left, attempts_left,
    last_sms_at, sms_id, completed_login, created_at, updated_at, call_status)
SELECT id, phone, udid, os, code, sms_left, attempts_left, last_sms_at, sms_id,
    completed_login, created_at, updated_at, call_status
FROM phone_signups;

DROP TABLE phone_signups;
ALTER TABLE phone_signups_new RENAME TO phone_signups;
CREATE UNIQUE INDEX phone_signups_phone_udid_login ON phone_signups (phone, udid, for_login);
