-- Initial schema, MySQL/MariaDB dialect. migrations/sqlite/0001_init.sql must
-- keep the same tables and column names: the store runs one set of queries on
-- both.
--
-- Constraints imposed by sqlx's Any driver:
-- * every integer, booleans included (0/1), is BIGINT: TINYINT/BOOLEAN have no
--   Any mapping and fail to decode;
-- * text is VARCHAR, never TEXT: MySQL reports TEXT columns as BLOB, which Any
--   decodes as bytes, not String.
-- The lengths below are the limits the store validates before writing.
--
-- utf8mb4_bin makes comparisons byte-wise and case-sensitive, as SQLite's
-- default BINARY collation is, so uniqueness means the same on both backends.

CREATE TABLE accounts (
    id                   BIGINT       NOT NULL AUTO_INCREMENT,
    login                VARCHAR(64)  NOT NULL,
    -- AES-256-GCM, "v1:" + hex: the SIP password must be recoverable (SPEC §3).
    sip_password_enc     VARCHAR(512) NOT NULL,
    -- argon2 PHC string; NULL until an access password is set.
    access_password_hash VARCHAR(255) NULL,
    active               BIGINT       NOT NULL DEFAULT 1,
    tariff               VARCHAR(64)  NOT NULL,
    currency             VARCHAR(16)  NOT NULL,
    dialplan_rule        VARCHAR(255) NOT NULL,
    -- Millionths of the currency unit, so money never goes through floats.
    balance_micro        BIGINT       NOT NULL DEFAULT 0,
    plan                 VARCHAR(64)  NULL,
    created_at           BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY accounts_login (login)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE profiles (
    login             VARCHAR(64)  NOT NULL,
    -- E.164 without the leading +.
    phone             VARCHAR(32)  NULL,
    username          VARCHAR(64)  NULL,
    display_name      VARCHAR(255) NULL,
    first_name        VARCHAR(128) NULL,
    last_name         VARCHAR(128) NULL,
    sex               VARCHAR(16)  NULL,
    birthday          VARCHAR(16)  NULL,
    city              VARCHAR(128) NULL,
    country           VARCHAR(64)  NULL,
    time_zone         VARCHAR(64)  NULL,
    language          VARCHAR(16)  NULL,
    email             VARCHAR(254) NULL,
    avatar_updated_at BIGINT       NULL,
    PRIMARY KEY (login),
    CONSTRAINT profiles_account FOREIGN KEY (login)
        REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE gateways (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    name       VARCHAR(64)  NOT NULL,
    -- '' is allowed and acts as the default route.
    prefix     VARCHAR(32)  NOT NULL,
    address    VARCHAR(255) NOT NULL,
    transport  VARCHAR(8)   NOT NULL,
    created_at BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY gateways_name (name),
    CONSTRAINT gateways_transport CHECK (transport IN ('udp', 'tcp', 'tls'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE dialplan (
    id     BIGINT       NOT NULL AUTO_INCREMENT,
    prefix VARCHAR(32)  NOT NULL,
    server VARCHAR(255) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY dialplan_prefix (prefix)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE voicemail_settings (
    login      VARCHAR(64)  NOT NULL,
    enabled    BIGINT       NOT NULL DEFAULT 1,
    greeting   VARCHAR(512) NULL,
    email_copy BIGINT       NOT NULL DEFAULT 0,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (login),
    CONSTRAINT voicemail_settings_account FOREIGN KEY (login)
        REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Named indexes, the same in both dialects (the store recognises a unique
-- violation's field from the index or column name in the error). NULLs never
-- collide, so accounts without a phone or username coexist.
CREATE UNIQUE INDEX profiles_phone ON profiles (phone);
CREATE UNIQUE INDEX profiles_username ON profiles (username);
CREATE INDEX gateways_prefix ON gateways (prefix);
