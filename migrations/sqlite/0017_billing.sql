-- Billing (SPEC §10), SQLite dialect (same tables as mysql/0017_billing.sql).
--
-- Money is exact: integers of millionths of the currency unit ("micro"),
-- never floats. Every change of accounts.balance_micro is a ledger row
-- written in the same transaction, so an account's balance is the sum of
-- its ledger. Debits are conditional updates (... WHERE balance_micro -
-- reserved_micro >= amount), so concurrent debits never overspend.

-- Money set aside for calls in progress (see balance_reservations): what a
-- debit may take is balance_micro - reserved_micro. Not a ledger movement.
ALTER TABLE accounts ADD COLUMN reserved_micro INTEGER NOT NULL DEFAULT 0;

-- Rows of the named tariffs (accounts.tariff): per-minute price by longest
-- prefix of the dialled number (E.164 digits).
CREATE TABLE tariff_rates (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    tariff               TEXT    NOT NULL,
    -- Digits, 1 to 32.
    prefix               TEXT    NOT NULL,
    description          TEXT    NOT NULL DEFAULT '',
    -- ISO 3166-1 alpha-2; only rows with one are listed by country.
    country              TEXT,
    -- ISO 4217; the same on every row of a tariff.
    currency             TEXT    NOT NULL,
    -- Per minute.
    price_micro          INTEGER NOT NULL,
    connection_fee_micro INTEGER NOT NULL DEFAULT 0,
    -- Seconds: the first increment is billed whole, then whole next ones.
    first_increment      INTEGER NOT NULL DEFAULT 60,
    next_increment       INTEGER NOT NULL DEFAULT 60,
    -- Seconds at the start of each answered call that are not billed.
    free_seconds         INTEGER NOT NULL DEFAULT 0,
    -- Per message; NULL: messages to this prefix are not sold.
    sms_price_micro      INTEGER
);
CREATE UNIQUE INDEX tariff_rates_prefix ON tariff_rates (tariff, prefix);
CREATE INDEX tariff_rates_country ON tariff_rates (tariff, country);

-- One row; bumped by every tariff change in the same transaction. Each node
-- polls it and reloads its in-memory tables when it moved.
CREATE TABLE tariff_version (
    id      INTEGER PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
);
INSERT INTO tariff_version (id, version) VALUES (1, 0);

CREATE TABLE ledger (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    login               TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    kind                TEXT    NOT NULL CHECK (kind IN ('topup', 'voucher', 'transfer-in',
                            'transfer-out', 'call', 'sms', 'plan', 'did', 'adjust')),
    -- Signed: credits positive, debits negative.
    amount_micro        INTEGER NOT NULL,
    balance_after_micro INTEGER NOT NULL,
    currency            TEXT    NOT NULL,
    -- Why: the dialled number, the peer of a transfer, the voucher batch, ...
    reference           TEXT,
    -- Who: "admin", "cli", "system", or the login that acted.
    actor               TEXT,
    created_at          INTEGER NOT NULL
);
CREATE INDEX ledger_login ON ledger (login, id);

-- Balances that existed before the ledger: one opening row each, so the
-- invariant holds from here on.
INSERT INTO ledger (login, kind, amount_micro, balance_after_micro, currency, reference, actor, created_at)
SELECT login, 'adjust', balance_micro, balance_micro, currency, 'opening balance', 'system',
       CAST(strftime('%s', 'now') AS INTEGER)
FROM accounts WHERE balance_micro <> 0;

-- Recharge PINs. Only an HMAC of the PIN is kept (key derived from
-- secret.key): a copy of the database holds no redeemable PIN.
CREATE TABLE vouchers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    pin_hash    TEXT    NOT NULL,
    batch       TEXT    NOT NULL,
    value_micro INTEGER NOT NULL,
    currency    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    -- No foreign key: the record outlives the account that redeemed it.
    redeemed_by TEXT,
    redeemed_at INTEGER
);
CREATE UNIQUE INDEX vouchers_pin ON vouchers (pin_hash);
CREATE INDEX vouchers_batch ON vouchers (batch);

-- What an authorised call may still cost: added to accounts.reserved_micro
-- at authorisation, taken off when the call is settled (or released); a
-- row whose call never settled (a node died) is released after expires_at.
CREATE TABLE balance_reservations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    login        TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    amount_micro INTEGER NOT NULL,
    reference    TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX balance_reservations_expiry ON balance_reservations (expires_at);
