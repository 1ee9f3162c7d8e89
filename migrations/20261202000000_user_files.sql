-- A DM can carry files (Slack's `file_share` message). robeing cannot open
-- them, but the exchange keeps their names beside the text, so the history
-- (an export, the operator's view) shows that the user sent a file even
-- when they wrote nothing with it.
ALTER TABLE exchanges ADD COLUMN user_files text[] NOT NULL DEFAULT '{}';
