-- Call recording, SQLite dialect (same tables as mysql/0010_call_recording.sql).
--
-- Which calls are recorded: an account's flag (its calls either way) or a
-- gateway's (every call through it); the value is the layout, 'mixed' (one
-- channel) or 'stereo' (caller left, callee right); NULL records nothing.
--
-- The audio is in the database like voicemail's (every node sees it, one
-- backup holds everything), but in chunks written while the call goes on:
-- a long call never makes one huge row, and a crash of the node loses only
-- the last seconds, not the recording.
ALTER TABLE accounts ADD COLUMN recording TEXT;
ALTER TABLE gateways ADD COLUMN recording TEXT;

CREATE TABLE call_recordings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id    TEXT    NOT NULL,
    -- Login or number, as in the call records.
    caller     TEXT    NOT NULL,
    callee     TEXT    NOT NULL,
    gateway    TEXT,
    layout     TEXT    NOT NULL CHECK (layout IN ('mixed', 'stereo')),
    -- Unix milliseconds.
    started_at INTEGER NOT NULL,
    -- NULL while the call goes on (or its node died during it).
    ended_at   INTEGER,
    -- Samples per channel (8 kHz) in the chunks so far.
    samples    INTEGER NOT NULL DEFAULT 0
);

-- The accounts that may list and download a recording (the recorded
-- parties on this switch); the admin API sees every recording.
CREATE TABLE call_recording_owners (
    recording_id INTEGER NOT NULL REFERENCES call_recordings (id) ON DELETE CASCADE,
    login        TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    PRIMARY KEY (recording_id, login)
);
CREATE INDEX call_recording_owners_login ON call_recording_owners (login, recording_id);

-- 16-bit little-endian PCM, channels interleaved, in order of seq.
CREATE TABLE call_recording_chunks (
    recording_id INTEGER NOT NULL REFERENCES call_recordings (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    pcm          BLOB    NOT NULL,
    PRIMARY KEY (recording_id, seq)
);
