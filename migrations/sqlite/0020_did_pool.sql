-- DIDs for sale (SPEC §10), SQLite dialect (same table as
-- mysql/0020_did_pool.sql).
--
-- The pool of numbers an operator imported, each free (login NULL) or held
-- by the account that ordered it. Ordering a number writes its routing row
-- into `dids` (0003) in the same transaction as the claim and the charge, so
-- inbound calls ring the holder through the existing DID routing; releasing
-- it (by the holder, or by the renewal when the balance cannot pay) deletes
-- that row again. Money is micro units of `currency`, as in 0017.
CREATE TABLE did_pool (
    -- E.164 without the leading +.
    number            TEXT    PRIMARY KEY NOT NULL,
    -- ISO 3166-1 alpha-2, upper case; numbers without one are not offered by country.
    country           TEXT,
    description       TEXT    NOT NULL DEFAULT '',
    -- ISO 4217: only accounts with this currency may order the number.
    currency          TEXT    NOT NULL,
    -- Charged at the order and at each renewal (billing.did_period_days).
    monthly_fee_micro INTEGER NOT NULL,
    -- Charged once, at the order.
    setup_fee_micro   INTEGER NOT NULL DEFAULT 0,
    -- The holder; NULL: free. An account deleted frees its numbers.
    login             TEXT    REFERENCES accounts (login) ON DELETE SET NULL,
    -- Unix seconds; meaningful only while held.
    ordered_at        INTEGER,
    -- Unix seconds: the renewal charges the next period from here.
    paid_until        INTEGER,
    created_at        INTEGER NOT NULL
);
CREATE INDEX did_pool_login ON did_pool (login);
CREATE INDEX did_pool_free ON did_pool (currency, country, number);
CREATE INDEX did_pool_due ON did_pool (paid_until);
