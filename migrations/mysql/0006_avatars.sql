-- Avatars, MySQL/MariaDB dialect (same table and columns as
-- sqlite/0006_avatars.sql, which says why they live in the database).

CREATE TABLE avatars (
    login        VARCHAR(64) NOT NULL,
    content_type VARCHAR(32) NOT NULL,
    -- MEDIUMBLOB (16 MiB): a resized avatar is far below; BLOB's 64 KiB is not.
    image        MEDIUMBLOB  NOT NULL,
    width        BIGINT      NOT NULL,
    height       BIGINT      NOT NULL,
    updated_at   BIGINT      NOT NULL,
    PRIMARY KEY (login),
    CONSTRAINT avatars_account FOREIGN KEY (login)
        REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

