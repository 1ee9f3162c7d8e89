-- The exchange a `slack_event` job produced, found by its event when the job
-- dies (to apologise and mark it failed), and kept cheap for the
-- `ON DELETE SET NULL` of `exchanges.event_id`.
CREATE INDEX exchanges_event ON exchanges (event_id) WHERE event_id IS NOT NULL;

-- A worker composing the reply holds a short claim on the exchange, so two
-- workers (a job re-run after its lease expired while the first run is still
-- waiting on the LLM) can never both reply. NULL: nobody is replying now.
ALTER TABLE exchanges ADD COLUMN reply_claimed_until timestamptz;
