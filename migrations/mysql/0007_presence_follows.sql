-- Presence that follows registrations, connections and address books,
-- MySQL/MariaDB dialect (same tables and columns as
-- sqlite/0006_presence_follows.sql; see 0001 for the type rules).

ALTER TABLE presence_publications
    ADD COLUMN transport VARCHAR(8)  NULL,
    ADD COLUMN source    VARCHAR(64) NULL;

CREATE TABLE contact_changes (
    id         BIGINT      NOT NULL AUTO_INCREMENT,
    owner      VARCHAR(64) NOT NULL,
    number     VARCHAR(32) NOT NULL,
    removed    BIGINT      NOT NULL,
    created_at BIGINT      NOT NULL,
    PRIMARY KEY (id),
    KEY contact_changes_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
