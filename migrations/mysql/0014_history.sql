-- History, MariaDB/MySQL dialect (same indexes as sqlite/0014_history.sql,
-- which says what they are for).
CREATE INDEX cdrs_callee ON cdrs (callee, id);
CREATE INDEX cdrs_caller_id ON cdrs (caller, id);
CREATE INDEX messages_conversation ON messages (sender, recipient, id);
