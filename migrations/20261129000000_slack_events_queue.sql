-- An inbound event is its own work item: the `slack_events` row that records
-- it carries its queue state, as `jobs` rows do, instead of a `slack_event`
-- job beside it. One row per event instead of two halves the Postgres work
-- of the group commit that every acknowledgement waits for (measured: a
-- jobs row with its four indexes cost as much as the event row itself).
--
-- Same states and rules as `jobs`: claimed with a lease (`locked_until`),
-- retried with backoff (`run_at`), `dead` after its last attempt with its
-- last error, never dropped.

-- Existing events are finished work unless a pending or dead job says
-- otherwise (their jobs are moved in below).
ALTER TABLE slack_events
    ADD COLUMN state        text        NOT NULL DEFAULT 'done'
                            CHECK (state IN ('queued', 'running', 'done', 'dead')),
    ADD COLUMN attempts     integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN run_at       timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN locked_until timestamptz,
    ADD COLUMN last_error   text,
    ADD COLUMN finished_at  timestamptz;

UPDATE slack_events e
SET state = j.state, attempts = j.attempts, run_at = j.run_at, locked_until = j.locked_until,
    last_error = j.last_error, finished_at = j.finished_at
FROM jobs j
WHERE j.kind = 'slack_event' AND j.dedupe_key = 'event:' || e.event_id;

UPDATE slack_events SET finished_at = received_at WHERE state = 'done' AND finished_at IS NULL;

DELETE FROM jobs WHERE kind = 'slack_event';

ALTER TABLE slack_events
    ALTER COLUMN state SET DEFAULT 'queued',
    ADD CONSTRAINT event_running_has_lease CHECK (state <> 'running' OR locked_until IS NOT NULL),
    ADD CONSTRAINT event_finished_when_final CHECK ((state IN ('done', 'dead')) = (finished_at IS NOT NULL)),
    ADD CONSTRAINT event_dead_says_why CHECK (state <> 'dead' OR last_error IS NOT NULL);

-- Unfinished events (claims, backlog and dead counts): few at any time.
CREATE INDEX slack_events_unfinished ON slack_events (run_at) WHERE state <> 'done';
