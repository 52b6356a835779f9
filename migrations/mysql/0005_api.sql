-- Client API state, MySQL/MariaDB dialect (same tables and columns as
-- sqlite/0005_api.sql; see 0001 for the type rules of sqlx's Any driver).

CREATE TABLE phone_signups (
    id              BIGINT       NOT NULL AUTO_INCREMENT,
    phone           VARCHAR(32)  NOT NULL,
    udid            VARCHAR(255) NOT NULL,
    os              VARCHAR(64)  NOT NULL,
    code            VARCHAR(8)   NOT NULL,
    sms_left        BIGINT       NOT NULL,
    attempts_left   BIGINT       NOT NULL,
    last_sms_at     BIGINT       NOT NULL,
    sms_id          BIGINT       NULL,
    completed_login VARCHAR(64)  NULL,
    created_at      BIGINT       NOT NULL,
    updated_at      BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY phone_signups_phone_udid (phone, udid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE sms_messages (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    provider        VARCHAR(64)   NOT NULL,
    number          VARCHAR(32)   NOT NULL,
    sender          VARCHAR(64)   NOT NULL,
    body            VARCHAR(4096) NOT NULL,
    purpose         VARCHAR(16)   NOT NULL,
    status          VARCHAR(16)   NOT NULL,
    provider_id     VARCHAR(255)  NULL,
    detail          VARCHAR(1024) NULL,
    attempts        BIGINT        NOT NULL DEFAULT 0,
    next_attempt_at BIGINT        NOT NULL,
    created_at      BIGINT        NOT NULL,
    updated_at      BIGINT        NOT NULL,
    PRIMARY KEY (id),
    KEY sms_messages_due (status, next_attempt_at),
    KEY sms_messages_provider_id (provider, provider_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
