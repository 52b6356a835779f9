-- Prepaid calls, MariaDB/MySQL dialect (same column as
-- sqlite/0018_cdr_cost.sql, which says what it holds).
ALTER TABLE cdrs ADD COLUMN cost_micro BIGINT NULL;
