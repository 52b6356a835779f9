-- Calls, MySQL/MariaDB dialect (same tables and columns as sqlite/0003_calls.sql).

CREATE TABLE dids (
    number     VARCHAR(32) NOT NULL,
    login      VARCHAR(64) NOT NULL,
    created_at BIGINT      NOT NULL,
    PRIMARY KEY (number),
    KEY dids_login (login),
    CONSTRAINT dids_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE cdrs (
    id           BIGINT       NOT NULL AUTO_INCREMENT,
    call_id      VARCHAR(255) NOT NULL,
    caller       VARCHAR(64)  NOT NULL,
    callee       VARCHAR(64)  NOT NULL,
    gateway      VARCHAR(64)  NULL,
    started_at   BIGINT       NOT NULL,
    answered_at  BIGINT       NULL,
    ended_at     BIGINT       NOT NULL,
    duration     BIGINT       NOT NULL,
    disposition  VARCHAR(16)  NOT NULL,
    code         BIGINT       NOT NULL,
    end_reason   VARCHAR(32)  NULL,
    PRIMARY KEY (id),
    KEY cdrs_started (started_at),
    KEY cdrs_caller (caller, started_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
