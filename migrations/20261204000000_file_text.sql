-- robeing now reads the text files a user sends in a DM (plain text,
-- Markdown, CSV, JSON, code snippets…). What it read is kept with the
-- exchange, each file's text under its name, so memory, a later recall and
-- the export have it; NULL when the message had no file that could be read.
ALTER TABLE exchanges ADD COLUMN file_text text;
