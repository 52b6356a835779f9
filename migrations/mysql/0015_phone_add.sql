-- Adding a phone number to an existing account (issue 18), MySQL/MariaDB
-- dialect (same table, column and index as sqlite/0015_phone_add.sql).
--
-- The account proves the number with the phone sign-up's code, rules and
-- table: its requests are phone_signups rows whose for_login names the
-- account adding the number ('' for a sign-up). The key becomes (phone,
-- udid, for_login), so an account's requests neither spend nor reveal a
-- sign-up's code and allowance, nor another account's.
ALTER TABLE phone_signups
    ADD COLUMN for_login VARCHAR(64) NOT NULL DEFAULT '',
    DROP INDEX phone_signups_phone_udid,
    ADD UNIQUE KEY phone_signups_phone_udid_login (phone, udid, for_login);
