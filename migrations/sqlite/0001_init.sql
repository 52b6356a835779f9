-- Initial schema, SQLite dialect. migrations/mysql/0001_init.sql must keep the
-- same tables and column names: the store runs one set of queries on both.
-- Integers (booleans included, as 0/1) are INTEGER so that they decode as i64
-- through sqlx's Any driver; SQLite's BOOLEAN affinity would not.

CREATE TABLE accounts (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    login                TEXT    NOT NULL UNIQUE,
    -- AES-256-GCM, "v1:" + hex: the SIP password must be recoverable (SPEC §3).
    sip_password_enc     TEXT    NOT NULL,
    -- argon2 PHC string; NULL until an access password is set.
    access_password_hash TEXT,
    active               INTEGER NOT NULL DEFAULT 1,
    tariff               TEXT    NOT NULL,
    currency             TEXT    NOT NULL,
    dialplan_rule        TEXT    NOT NULL,
    -- Millionths of the currency unit, so money never goes through floats.
    balance_micro        INTEGER NOT NULL DEFAULT 0,
    plan                 TEXT,
    created_at           INTEGER NOT NULL
);

CREATE TABLE profiles (
    login             TEXT PRIMARY KEY NOT NULL
                      REFERENCES accounts (login) ON DELETE CASCADE,
    -- E.164 without the leading +.
    phone             TEXT,
    username          TEXT,
    display_name      TEXT,
    first_name        TEXT,
    last_name         TEXT,
    sex               TEXT,
    birthday          TEXT,
    city              TEXT,
    country           TEXT,
    time_zone         TEXT,
    language          TEXT,
    email             TEXT,
    avatar_updated_at INTEGER
);

CREATE TABLE gateways (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    -- '' is allowed and acts as the default route.
    prefix     TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    transport  TEXT    NOT NULL CHECK (transport IN ('udp', 'tcp', 'tls')),
    created_at INTEGER NOT NULL
);

CREATE TABLE dialplan (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    prefix TEXT NOT NULL UNIQUE,
    server TEXT NOT NULL
);

CREATE TABLE voicemail_settings (
    login      TEXT PRIMARY KEY NOT NULL
               REFERENCES accounts (login) ON DELETE CASCADE,
    enabled    INTEGER NOT NULL DEFAULT 1,
    greeting   TEXT,
    email_copy INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

-- Named indexes, the same in both dialects (the store recognises a unique
-- violation's field from the index or column name in the error). NULLs never collide, so accounts
-- without a phone or username coexist.
CREATE UNIQUE INDEX profiles_phone ON profiles (phone);
CREATE UNIQUE INDEX profiles_username ON profiles (username);
CREATE INDEX gateways_prefix ON gateways (prefix);
