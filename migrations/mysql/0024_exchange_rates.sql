-- Exchange rates set by the operator, MySQL/MariaDB dialect (same columns
-- as sqlite/0024_exchange_rates.sql): 1 `base` = rate_nano / 10^9 `quote`.
-- A pair converts both ways (see host/src/billing/fx.rs). A change bumps
-- tariff_version, so every node reloads its rates with its tariffs.
CREATE TABLE exchange_rates (
    base       VARCHAR(3) NOT NULL,
    quote      VARCHAR(3) NOT NULL,
    rate_nano  BIGINT     NOT NULL,
    updated_at BIGINT     NOT NULL,
    PRIMARY KEY (base, quote)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
