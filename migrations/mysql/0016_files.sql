-- File sharing, MariaDB/MySQL dialect (same tables as sqlite/0016_files.sql,
-- which says why they are so).
CREATE TABLE shared_files (
    id           VARCHAR(32)  NOT NULL,
    sender       VARCHAR(64)  NOT NULL,
    content_type VARCHAR(64)  NOT NULL,
    name         VARCHAR(255) NULL,
    size         BIGINT       NOT NULL DEFAULT 0,
    complete     BIGINT       NOT NULL DEFAULT 0,
    created_at   BIGINT       NOT NULL,
    expires_at   BIGINT       NOT NULL,
    PRIMARY KEY (id),
    KEY shared_files_expiry (expires_at),
    KEY shared_files_incomplete (complete, created_at),
    CONSTRAINT shared_files_sender FOREIGN KEY (sender) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE shared_file_recipients (
    file_id       VARCHAR(32) NOT NULL,
    login         VARCHAR(64) NOT NULL,
    downloaded_at BIGINT      NULL,
    PRIMARY KEY (file_id, login),
    CONSTRAINT shared_file_recipients_file FOREIGN KEY (file_id) REFERENCES shared_files (id) ON DELETE CASCADE,
    CONSTRAINT shared_file_recipients_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE shared_file_chunks (
    file_id VARCHAR(32) NOT NULL,
    seq     BIGINT      NOT NULL,
    -- MEDIUMBLOB (16 MiB); chunks are 1 MiB, under MariaDB's default
    -- max_allowed_packet (16 MiB) with room to spare.
    data    MEDIUMBLOB  NOT NULL,
    PRIMARY KEY (file_id, seq),
    CONSTRAINT shared_file_chunks_file FOREIGN KEY (file_id) REFERENCES shared_files (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
