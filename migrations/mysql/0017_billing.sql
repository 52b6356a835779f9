-- Billing (SPEC §10), MariaDB/MySQL dialect (same tables as
-- sqlite/0017_billing.sql, which says what each is for). Integers are BIGINT
-- and strings VARCHAR: sqlx's Any driver decodes neither TINYINT nor TEXT.

ALTER TABLE accounts ADD COLUMN reserved_micro BIGINT NOT NULL DEFAULT 0;

CREATE TABLE tariff_rates (
    id                   BIGINT       NOT NULL AUTO_INCREMENT,
    tariff               VARCHAR(64)  NOT NULL,
    prefix               VARCHAR(32)  NOT NULL,
    description          VARCHAR(255) NOT NULL DEFAULT '',
    country              VARCHAR(2)   NULL,
    currency             VARCHAR(3)   NOT NULL,
    price_micro          BIGINT       NOT NULL,
    connection_fee_micro BIGINT       NOT NULL DEFAULT 0,
    first_increment      BIGINT       NOT NULL DEFAULT 60,
    next_increment       BIGINT       NOT NULL DEFAULT 60,
    free_seconds         BIGINT       NOT NULL DEFAULT 0,
    sms_price_micro      BIGINT       NULL,
    PRIMARY KEY (id),
    UNIQUE KEY tariff_rates_prefix (tariff, prefix),
    KEY tariff_rates_country (tariff, country)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE tariff_version (
    id      BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO tariff_version (id, version) VALUES (1, 0);

CREATE TABLE ledger (
    id                  BIGINT       NOT NULL AUTO_INCREMENT,
    login               VARCHAR(64)  NOT NULL,
    kind                VARCHAR(16)  NOT NULL,
    amount_micro        BIGINT       NOT NULL,
    balance_after_micro BIGINT       NOT NULL,
    currency            VARCHAR(16)  NOT NULL,
    reference           VARCHAR(255) NULL,
    actor               VARCHAR(64)  NULL,
    created_at          BIGINT       NOT NULL,
    PRIMARY KEY (id),
    KEY ledger_login (login, id),
    CONSTRAINT ledger_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE,
    CONSTRAINT ledger_kind CHECK (kind IN ('topup', 'voucher', 'transfer-in',
        'transfer-out', 'call', 'sms', 'plan', 'did', 'adjust'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO ledger (login, kind, amount_micro, balance_after_micro, currency, reference, actor, created_at)
SELECT login, 'adjust', balance_micro, balance_micro, currency, 'opening balance', 'system', UNIX_TIMESTAMP()
FROM accounts WHERE balance_micro <> 0;

CREATE TABLE vouchers (
    id          BIGINT      NOT NULL AUTO_INCREMENT,
    pin_hash    VARCHAR(64) NOT NULL,
    batch       VARCHAR(32) NOT NULL,
    value_micro BIGINT      NOT NULL,
    currency    VARCHAR(3)  NOT NULL,
    created_at  BIGINT      NOT NULL,
    expires_at  BIGINT      NOT NULL,
    redeemed_by VARCHAR(64) NULL,
    redeemed_at BIGINT      NULL,
    PRIMARY KEY (id),
    UNIQUE KEY vouchers_pin (pin_hash),
    KEY vouchers_batch (batch)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE balance_reservations (
    id           BIGINT       NOT NULL AUTO_INCREMENT,
    login        VARCHAR(64)  NOT NULL,
    amount_micro BIGINT       NOT NULL,
    reference    VARCHAR(255) NULL,
    created_at   BIGINT       NOT NULL,
    expires_at   BIGINT       NOT NULL,
    PRIMARY KEY (id),
    KEY balance_reservations_expiry (expires_at),
    CONSTRAINT balance_reservations_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
