-- Push notifications, MariaDB/MySQL dialect (same tables as
-- sqlite/0012_push.sql, which says what the columns mean).
CREATE TABLE push_tokens (
    id         BIGINT        NOT NULL AUTO_INCREMENT,
    login      VARCHAR(64)   NOT NULL,
    instance   VARCHAR(255)  NOT NULL,
    provider   VARCHAR(64)   NOT NULL,
    -- UnifiedPush endpoints are URLs; APNs and FCM tokens are shorter.
    token      VARCHAR(1024) NOT NULL,
    app        VARCHAR(255)  NOT NULL DEFAULT '',
    sandbox    BIGINT        NOT NULL DEFAULT 0,
    kind       VARCHAR(8)    NOT NULL,
    source     VARCHAR(8)    NOT NULL,
    created_at BIGINT        NOT NULL,
    updated_at BIGINT        NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY push_tokens_device (login, instance, kind),
    UNIQUE KEY push_tokens_token (provider, token(255)),
    CONSTRAINT push_tokens_kind CHECK (kind IN ('voip', 'alert')),
    CONSTRAINT push_tokens_source CHECK (source IN ('api', 'register')),
    CONSTRAINT push_tokens_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE push_outbox (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    token_id        BIGINT        NOT NULL,
    login           VARCHAR(64)   NOT NULL,
    provider        VARCHAR(64)   NOT NULL,
    kind            VARCHAR(16)   NOT NULL,
    notification    VARCHAR(8192) NOT NULL,
    status          VARCHAR(16)   NOT NULL,
    detail          VARCHAR(1024) NULL,
    attempts        BIGINT        NOT NULL DEFAULT 0,
    next_attempt_at BIGINT        NOT NULL,
    created_at      BIGINT        NOT NULL,
    updated_at      BIGINT        NOT NULL,
    PRIMARY KEY (id),
    KEY push_outbox_due (status, next_attempt_at),
    KEY push_outbox_login (login, id),
    CONSTRAINT push_outbox_status CHECK (status IN ('queued', 'sending', 'delivered', 'failed')),
    CONSTRAINT push_outbox_token FOREIGN KEY (token_id) REFERENCES push_tokens (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
