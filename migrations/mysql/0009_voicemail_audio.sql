-- Voicemail recordings and greetings, MySQL/MariaDB dialect (same tables as
-- sqlite/0009_voicemail_audio.sql, where the reasons are given).

CREATE TABLE voicemail_audio (
    message_id BIGINT     NOT NULL,
    -- MEDIUMBLOB (16 MiB): a two-minute recording is under 2 MB.
    wav        MEDIUMBLOB NOT NULL,
    PRIMARY KEY (message_id),
    CONSTRAINT voicemail_audio_message FOREIGN KEY (message_id) REFERENCES voicemail_messages (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE voicemail_greetings (
    login       VARCHAR(64) NOT NULL,
    duration_ms BIGINT      NOT NULL,
    wav         MEDIUMBLOB  NOT NULL,
    updated_at  BIGINT      NOT NULL,
    PRIMARY KEY (login),
    CONSTRAINT voicemail_greetings_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE phone_signups ADD COLUMN call_status VARCHAR(16) NULL;

CREATE TABLE voicemail_email_outbox (
    id          BIGINT        NOT NULL AUTO_INCREMENT,
    message_id  BIGINT        NOT NULL,
    address     VARCHAR(320)  NOT NULL,
    attempts    BIGINT        NOT NULL DEFAULT 0,
    next_at     BIGINT        NOT NULL,
    last_error  VARCHAR(1024) NULL,
    created_at  BIGINT        NOT NULL,
    PRIMARY KEY (id),
    KEY voicemail_email_outbox_due (next_at),
    CONSTRAINT voicemail_email_outbox_message FOREIGN KEY (message_id) REFERENCES voicemail_messages (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
