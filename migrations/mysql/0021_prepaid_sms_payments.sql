-- Prepaid OFFNET SMS, MariaDB/MySQL dialect (same columns as
-- sqlite/0021_sms_charge.sql, which says what they hold).
ALTER TABLE sms_outbox ADD COLUMN charge_micro BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sms_messages ADD COLUMN charge_micro BIGINT NOT NULL DEFAULT 0;

CREATE TABLE payments (
    id           VARCHAR(128) NOT NULL,
    login        VARCHAR(64)  NOT NULL,
    amount_micro BIGINT       NOT NULL,
    currency     VARCHAR(3)   NOT NULL,
    ledger_id    BIGINT       NOT NULL,
    created_at   BIGINT       NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT payments_login FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
