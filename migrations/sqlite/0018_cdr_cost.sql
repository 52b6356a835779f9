-- Prepaid calls (SPEC §10), SQLite dialect (same column as
-- mysql/0018_cdr_cost.sql): what a charged call cost its caller, in micro
-- units of the caller's currency, written in the same transaction as the
-- debit and its ledger row. NULL for calls nobody was charged for.
ALTER TABLE cdrs ADD COLUMN cost_micro INTEGER;
