-- Call recording, MariaDB/MySQL dialect (same tables as
-- sqlite/0010_call_recording.sql, which says why they are so).
ALTER TABLE accounts ADD COLUMN recording VARCHAR(8) NULL;
ALTER TABLE gateways ADD COLUMN recording VARCHAR(8) NULL;

CREATE TABLE call_recordings (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    call_id    VARCHAR(255) NOT NULL,
    caller     VARCHAR(128) NOT NULL,
    callee     VARCHAR(128) NOT NULL,
    gateway    VARCHAR(64)  NULL,
    layout     VARCHAR(8)   NOT NULL,
    started_at BIGINT       NOT NULL,
    ended_at   BIGINT       NULL,
    samples    BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    CONSTRAINT call_recordings_layout CHECK (layout IN ('mixed', 'stereo'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE call_recording_owners (
    recording_id BIGINT      NOT NULL,
    login        VARCHAR(64) NOT NULL,
    PRIMARY KEY (recording_id, login),
    KEY call_recording_owners_login (login, recording_id),
    CONSTRAINT call_recording_owners_recording FOREIGN KEY (recording_id) REFERENCES call_recordings (id) ON DELETE CASCADE,
    CONSTRAINT call_recording_owners_account FOREIGN KEY (login) REFERENCES accounts (login) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE call_recording_chunks (
    recording_id BIGINT     NOT NULL,
    seq          BIGINT     NOT NULL,
    -- MEDIUMBLOB (16 MiB): a chunk is a few seconds (160 KB per 5 s stereo).
    pcm          MEDIUMBLOB NOT NULL,
    PRIMARY KEY (recording_id, seq),
    CONSTRAINT call_recording_chunks_recording FOREIGN KEY (recording_id) REFERENCES call_recordings (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
