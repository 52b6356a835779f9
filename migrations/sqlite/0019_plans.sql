-- Plans (SPEC §10), SQLite dialect (same tables as mysql/0019_plans.sql):
-- bundles of call seconds to some prefixes, bought from the balance once
-- (a `plan` ledger row in the purchase's transaction) and consumed by
-- prepaid calls before the balance.

-- The catalogue an operator sells.
CREATE TABLE plans (
    name          TEXT    PRIMARY KEY NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    -- Per purchase (and per renewal), micro units of `currency`.
    price_micro   INTEGER NOT NULL,
    -- ISO 4217: only accounts of this currency can buy it.
    currency      TEXT    NOT NULL,
    -- Call seconds per period.
    seconds       INTEGER NOT NULL,
    -- Comma-separated digit prefixes the seconds cover; '' = every number.
    prefixes      TEXT    NOT NULL DEFAULT '',
    -- Days a period lasts; 0 = the seconds never expire.
    validity_days INTEGER NOT NULL DEFAULT 0,
    -- 1: renewed at expiry (debited again) while the balance pays.
    recurring     INTEGER NOT NULL DEFAULT 0,
    -- 0: not sold any more (bought ones run on).
    for_sale      INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
);

-- Plans bought: the terms are copied at purchase, so a later change of the
-- catalogue applies to new purchases only.
CREATE TABLE account_plans (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    login         TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    plan          TEXT    NOT NULL,
    price_micro   INTEGER NOT NULL,
    currency      TEXT    NOT NULL,
    period_secs   INTEGER NOT NULL,
    -- What is left of this period, and the part of it that calls in
    -- progress hold (see balance_reservations.plan_secs): a call may take
    -- seconds_left - reserved_secs.
    seconds_left  INTEGER NOT NULL,
    reserved_secs INTEGER NOT NULL DEFAULT 0,
    prefixes      TEXT    NOT NULL DEFAULT '',
    validity_days INTEGER NOT NULL DEFAULT 0,
    recurring     INTEGER NOT NULL DEFAULT 0,
    status        TEXT    NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'expired', 'cancelled')),
    bought_at     INTEGER NOT NULL,
    -- End of the current period; NULL: never.
    expires_at    INTEGER
);
CREATE INDEX account_plans_login ON account_plans (login, status);
CREATE INDEX account_plans_expiry ON account_plans (status, expires_at);

-- The plan seconds a call's reservation holds beside its money: freed (and
-- the used part taken off seconds_left) when the reservation ends.
ALTER TABLE balance_reservations ADD COLUMN account_plan_id INTEGER;
ALTER TABLE balance_reservations ADD COLUMN plan_secs INTEGER NOT NULL DEFAULT 0;
