-- Presence across cluster nodes, MariaDB/MySQL dialect (same columns as
-- sqlite/0023_presence_shares.sql, which says what they hold).
CREATE TABLE presence_shares (
    login      VARCHAR(64)   NOT NULL,
    node       VARCHAR(255)  NOT NULL,
    online     BIGINT        NOT NULL,
    note       VARCHAR(1024) NULL,
    note_at    BIGINT        NOT NULL,
    push       BIGINT        NOT NULL,
    updated_at BIGINT        NOT NULL,
    PRIMARY KEY (login, node),
    KEY presence_shares_updated (updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
