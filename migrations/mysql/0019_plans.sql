-- Plans (SPEC §10), MariaDB/MySQL dialect (same tables as
-- sqlite/0019_plans.sql, which says what each column is for). Integers are
-- BIGINT and strings VARCHAR: sqlx's Any driver decodes neither TINYINT nor
-- TEXT.

CREATE TABLE plans (
    name          VARCHAR(64)   NOT NULL,
    description   VARCHAR(255)  NOT NULL DEFAULT '',
    price_micro   BIGINT        NOT NULL,
    currency      VARCHAR(3)    NOT NULL,
    seconds       BIGINT        NOT NULL,
    prefixes      VARCHAR(1024) NOT NULL DEFAULT '',
    validity_days BIGINT        NOT NULL DEFAULT 0,
    recurring     BIGINT        NOT NULL DEFAULT 0,
    for_sale      BIGINT        NOT NULL DEFAULT 1,
    created_at    BIGINT        NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE account_plans (
    id            BIGINT        NOT NULL AUTO_INCREMENT,
    login         VARCHAR(64)   NOT NULL,
    plan          VARCHAR(64)   NOT NULL,
    price_micro   BIGINT        NOT NULL,
    currency      VARCHAR(3)    NOT NULL,
    period_secs   BIGINT        NOT NULL,
    seconds_left  BIGINT        NOT NULL,
    reserved_secs BIGINT        NOT NULL DEFAULT 0,
    prefixes      VARCHAR(1024) NOT NULL DEFAULT '',
    validity_days BIGINT        NOT NULL DEFAULT 0,
    recurring     BIGINT        NOT NULL DEFAULT 0,
    status        VARCHAR(16)   NOT NULL DEFAULT 'active',
    bought_at     BIGINT        NOT NULL,
    expires_at    BIGINT        NULL,
    PRIMARY KEY (id),
    KEY account_plans_login (login, status),
    KEY account_plans_expiry (status, expires_at),
    CONSTRAINT account_plans_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE,
    CONSTRAINT account_plans_status CHECK (status IN ('active', 'expired', 'cancelled'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE balance_reservations ADD COLUMN account_plan_id BIGINT NULL;
ALTER TABLE balance_reservations ADD COLUMN plan_secs BIGINT NOT NULL DEFAULT 0;
