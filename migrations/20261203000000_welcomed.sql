-- robeing says hello once, the first time a person opens its Messages tab
-- before ever writing to it (`conversation::welcome`). `welcomed_at` is
-- when; everyone robeing already knew has met it, so they count as
-- welcomed and are not greeted out of the blue.
ALTER TABLE slack_users ADD COLUMN welcomed_at timestamptz;
UPDATE slack_users SET welcomed_at = first_seen_at;
