-- Prepaid OFFNET SMS (SPEC §10), SQLite dialect (same columns as
-- mysql/0021_sms_charge.sql): what the sender was charged for a message,
-- micro units of the sender's currency, debited with its `sms` ledger row in
-- the transaction that queued it. It travels with the message into the SMS
-- queue so that a message the vendor never accepts is refunded with the
-- transaction that marks it failed. 0: nobody was charged.
ALTER TABLE sms_outbox ADD COLUMN charge_micro INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sms_messages ADD COLUMN charge_micro INTEGER NOT NULL DEFAULT 0;

-- Payments a payment page reported through the webhook (POST
-- /v1/payments/webhook), one row per payment id, written in the transaction
-- of its `topup` ledger row: a payment delivered twice is credited once.
CREATE TABLE payments (
    -- The payment provider's id.
    id           TEXT    PRIMARY KEY NOT NULL,
    login        TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    amount_micro INTEGER NOT NULL,
    currency     TEXT    NOT NULL,
    ledger_id    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
