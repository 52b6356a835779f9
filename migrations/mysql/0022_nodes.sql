-- Switch nodes sharing this database, MariaDB/MySQL dialect (same columns as
-- sqlite/0022_nodes.sql, which says what they hold).
CREATE TABLE nodes (
    node       VARCHAR(255) NOT NULL,
    name       VARCHAR(64)  NOT NULL,
    started_at BIGINT       NOT NULL,
    seen_at    BIGINT       NOT NULL,
    PRIMARY KEY (node)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
