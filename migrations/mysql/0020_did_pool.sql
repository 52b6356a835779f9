-- DIDs for sale (SPEC §10), MariaDB/MySQL dialect (same table as
-- sqlite/0020_did_pool.sql, which says what each column holds). Integers
-- are BIGINT and strings VARCHAR: sqlx's Any driver decodes neither TINYINT
-- nor TEXT.

CREATE TABLE did_pool (
    number            VARCHAR(32)  NOT NULL,
    country           VARCHAR(2)   NULL,
    description       VARCHAR(255) NOT NULL DEFAULT '',
    currency          VARCHAR(3)   NOT NULL,
    monthly_fee_micro BIGINT       NOT NULL,
    setup_fee_micro   BIGINT       NOT NULL DEFAULT 0,
    login             VARCHAR(64)  NULL,
    ordered_at        BIGINT       NULL,
    paid_until        BIGINT       NULL,
    created_at        BIGINT       NOT NULL,
    PRIMARY KEY (number),
    KEY did_pool_login (login),
    KEY did_pool_free (currency, country, number),
    KEY did_pool_due (paid_until),
    CONSTRAINT did_pool_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
