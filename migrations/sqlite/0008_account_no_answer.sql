-- Per-account no-answer timeout, SQLite dialect (same column as
-- mysql/0008_account_no_answer.sql).

-- Seconds the account's devices ring before the routing guest is asked again
-- with the reason "no-answer" (voicemail). NULL means the switch-wide
-- calls.no_answer_secs; 0 rings until the caller gives up. The store keeps
-- other values within 5..=600.
ALTER TABLE accounts ADD COLUMN no_answer_secs INTEGER;
