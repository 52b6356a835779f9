-- Exchange rates set by the operator, SQLite dialect (same columns as
-- mysql/0024_exchange_rates.sql): 1 `base` = rate_nano / 10^9 `quote`. A
-- pair converts both ways (see host/src/billing/fx.rs). A change bumps
-- tariff_version, so every node reloads its rates with its tariffs.
CREATE TABLE exchange_rates (
    base       TEXT    NOT NULL,
    quote      TEXT    NOT NULL,
    rate_nano  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (base, quote)
);
