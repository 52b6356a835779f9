-- History (SPEC §7, the seed's offline history), SQLite dialect (same
-- indexes as mysql/0014_history.sql): a user's calls as caller or callee,
-- and the messages of one conversation, newest first, without a scan.
CREATE INDEX cdrs_callee ON cdrs (callee, id);
CREATE INDEX cdrs_caller_id ON cdrs (caller, id);
CREATE INDEX messages_conversation ON messages (sender, recipient, id);
