-- SIP core state, MySQL/MariaDB dialect (same tables and columns as
-- sqlite/0002_sip.sql; see 0001 for the type rules of sqlx's Any driver).

CREATE TABLE bindings (
    id          BIGINT        NOT NULL AUTO_INCREMENT,
    login       VARCHAR(64)   NOT NULL,
    binding_key VARCHAR(255)  NOT NULL,
    contact     VARCHAR(1024) NOT NULL,
    instance    VARCHAR(255)  NULL,
    reg_id      BIGINT        NULL,
    call_id     VARCHAR(255)  NOT NULL,
    cseq        BIGINT        NOT NULL,
    expires_at  BIGINT        NOT NULL,
    transport   VARCHAR(8)    NOT NULL,
    source      VARCHAR(64)   NOT NULL,
    local       VARCHAR(64)   NOT NULL,
    node        VARCHAR(255)  NOT NULL,
    user_agent  VARCHAR(255)  NULL,
    updated_at  BIGINT        NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY bindings_login_key (login, binding_key),
    KEY bindings_expires (expires_at),
    CONSTRAINT bindings_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE messages (
    id           BIGINT       NOT NULL AUTO_INCREMENT,
    sender       VARCHAR(64)  NOT NULL,
    sender_name  VARCHAR(255) NULL,
    recipient    VARCHAR(64)  NOT NULL,
    content_type VARCHAR(255) NOT NULL,
    body         LONGBLOB     NOT NULL,
    status       VARCHAR(16)  NOT NULL,
    is_system    BIGINT       NOT NULL DEFAULT 0,
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL,
    PRIMARY KEY (id),
    KEY messages_recipient_status (recipient, status, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE sms_outbox (
    id           BIGINT       NOT NULL AUTO_INCREMENT,
    sender       VARCHAR(64)  NOT NULL,
    number       VARCHAR(32)  NOT NULL,
    gateway      VARCHAR(64)  NOT NULL,
    body         LONGBLOB     NOT NULL,
    status       VARCHAR(16)  NOT NULL,
    attempts     BIGINT       NOT NULL DEFAULT 0,
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL,
    PRIMARY KEY (id),
    KEY sms_outbox_status (status, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
