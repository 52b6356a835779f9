-- Address-book uploads, MariaDB/MySQL dialect (same tables as
-- sqlite/0013_contact_uploads.sql, which says what the columns mean).
CREATE TABLE contact_uploads (
    token        VARCHAR(64)  NOT NULL,
    owner        VARCHAR(64)  NOT NULL,
    replace_book BIGINT       NOT NULL,
    status       VARCHAR(8)   NOT NULL,
    entries      BIGINT       NOT NULL DEFAULT 0,
    result       MEDIUMBLOB   NULL,
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL,
    PRIMARY KEY (token),
    KEY contact_uploads_owner (owner),
    KEY contact_uploads_status (status, updated_at),
    CONSTRAINT contact_uploads_status_values CHECK (status IN ('open', 'pending', 'done')),
    CONSTRAINT contact_uploads_account FOREIGN KEY (owner) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE contact_upload_entries (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    token      VARCHAR(64)  NOT NULL,
    contact_id VARCHAR(128) NOT NULL,
    name       VARCHAR(255) NULL,
    number     VARCHAR(32)  NOT NULL,
    PRIMARY KEY (id),
    KEY contact_upload_entries_token (token),
    CONSTRAINT contact_upload_entries_upload FOREIGN KEY (token) REFERENCES contact_uploads (token) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
