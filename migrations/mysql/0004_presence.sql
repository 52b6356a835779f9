-- Presence, address books and voicemail counts, MySQL/MariaDB dialect (same
-- tables and columns as sqlite/0004_presence.sql; see 0001 for the type rules
-- of sqlx's Any driver).

CREATE TABLE contacts (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    owner      VARCHAR(64)  NOT NULL,
    contact_id VARCHAR(128) NOT NULL,
    name       VARCHAR(255) NULL,
    number     VARCHAR(32)  NOT NULL,
    created_at BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY contacts_owner_entry (owner, contact_id, number),
    KEY contacts_number (number),
    CONSTRAINT contacts_account FOREIGN KEY (owner) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE presence_publications (
    etag       VARCHAR(64)   NOT NULL,
    login      VARCHAR(64)   NOT NULL,
    basic      VARCHAR(8)    NOT NULL,
    note       VARCHAR(1024) NULL,
    expires_at BIGINT        NOT NULL,
    updated_at BIGINT        NOT NULL,
    PRIMARY KEY (etag),
    KEY presence_publications_login (login),
    CONSTRAINT presence_publications_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE presence_subscriptions (
    id           BIGINT        NOT NULL AUTO_INCREMENT,
    event        VARCHAR(32)   NOT NULL,
    watcher      VARCHAR(64)   NOT NULL,
    resource     VARCHAR(64)   NOT NULL,
    is_list      BIGINT        NOT NULL DEFAULT 0,
    resource_uri VARCHAR(1024) NOT NULL,
    call_id      VARCHAR(255)  NOT NULL,
    local_tag    VARCHAR(64)   NOT NULL,
    remote       VARCHAR(1024) NOT NULL,
    remote_tag   VARCHAR(255)  NOT NULL,
    target       VARCHAR(1024) NOT NULL,
    event_id     VARCHAR(255)  NULL,
    cseq_floor   BIGINT        NOT NULL,
    transport    VARCHAR(8)    NOT NULL,
    source       VARCHAR(64)   NOT NULL,
    local        VARCHAR(64)   NOT NULL,
    expires_at   BIGINT        NOT NULL,
    created_at   BIGINT        NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY presence_subscriptions_dialog (call_id, local_tag),
    KEY presence_subscriptions_resource (resource),
    CONSTRAINT presence_subscriptions_account FOREIGN KEY (watcher) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE voicemail_messages (
    id          BIGINT        NOT NULL AUTO_INCREMENT,
    login       VARCHAR(64)   NOT NULL,
    caller      VARCHAR(64)   NOT NULL,
    caller_name VARCHAR(255)  NULL,
    duration_ms BIGINT        NOT NULL DEFAULT 0,
    recording   VARCHAR(1024) NULL,
    heard       BIGINT        NOT NULL DEFAULT 0,
    created_at  BIGINT        NOT NULL,
    PRIMARY KEY (id),
    KEY voicemail_messages_login (login, heard),
    CONSTRAINT voicemail_messages_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
