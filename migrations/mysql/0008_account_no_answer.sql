-- Per-account no-answer timeout, MySQL/MariaDB dialect (same column as
-- sqlite/0008_account_no_answer.sql, which says what it means).

ALTER TABLE accounts ADD COLUMN no_answer_secs BIGINT NULL;
