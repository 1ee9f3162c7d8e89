-- The exchange a `slack_event` job produced, found by its event when the job
-- dies (to apologise and mark it failed), and kept cheap for the
-- `ON DELETE SET NULL` of `exchanges.event_id`.
CREATE INDEX exchanges_event ON exchanges (event_id) WHERE event_id IS NOT NULL;
