-- Answering rules by caller ID, MariaDB/MySQL dialect (same table as
-- sqlite/0011_answering_rules.sql, which says what the columns mean).
CREATE TABLE answering_rules (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    login      VARCHAR(64)  NOT NULL,
    caller     VARCHAR(128) NOT NULL,
    action     VARCHAR(16)  NOT NULL,
    -- MEDIUMBLOB (16 MiB): a two-minute greeting is under 2 MB.
    greeting   MEDIUMBLOB   NULL,
    created_at BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY answering_rules_caller (login, caller),
    CONSTRAINT answering_rules_action CHECK (action IN ('ring', 'ring-only', 'voicemail', 'reject')),
    CONSTRAINT answering_rules_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
