-- robeing: the whole mission's schema. Migrations are add-only from here on.
-- Invariants live here, not only in code: a state the code must never produce
-- is one Postgres refuses to store.

-- A process writes this row at start-up and reads it back, so a read-only or
-- broken database is caught before the first user message.
CREATE TABLE startup_canary (
    id          smallint    PRIMARY KEY CHECK (id = 1),
    instance    text        NOT NULL,
    written_at  timestamptz NOT NULL
);

-- Slack workspaces. An uninstalled workspace stays, marked inactive, so its
-- history is kept and outbound work for it stops.
CREATE TABLE slack_teams (
    team_id          text        PRIMARY KEY CHECK (team_id ~ '^[TE][A-Z0-9]{2,}$'),
    name             text,
    active           boolean     NOT NULL DEFAULT true,
    inactive_reason  text,
    inactive_since   timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inactive_has_reason
        CHECK (active OR (inactive_reason IS NOT NULL AND inactive_since IS NOT NULL))
);

-- People who talk to robeing. Slack user ids are unique across workspaces.
CREATE TABLE slack_users (
    user_id             text        PRIMARY KEY CHECK (user_id ~ '^[UW][A-Z0-9]{2,}$'),
    team_id             text        NOT NULL REFERENCES slack_teams (team_id),
    real_name           text,
    display_name        text,
    tz                  text,
    locale              text,
    dm_channel_id       text        CHECK (dm_channel_id ~ '^D[A-Z0-9]{2,}$'),
    -- NULL: the operator's BRIEFING_TIME applies.
    briefing_time       time,
    briefing_enabled    boolean     NOT NULL DEFAULT true,
    profile_fetched_at  timestamptz,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT seen_in_order CHECK (last_seen_at >= first_seen_at)
);
CREATE INDEX slack_users_team ON slack_users (team_id);

-- Gmail connections. The seed's `is_equipped = true, token_data = NULL` is
-- exactly what `connected_requires_token` forbids; tokens exist only while
-- connected, so a broken connection cannot keep a stale secret around.
CREATE TABLE gmail_connections (
    user_id                   text        PRIMARY KEY REFERENCES slack_users (user_id) ON DELETE CASCADE,
    state                     text        NOT NULL
                              CHECK (state IN ('connected', 'needs_reconnect', 'disconnected')),
    google_email              text,
    -- AES-256-GCM ciphertexts (nonce || ciphertext || tag) and the key that made them.
    refresh_token_ciphertext  bytea,
    access_token_ciphertext   bytea,
    access_token_expires_at   timestamptz,
    token_key_id              text,
    scopes                    text[]      NOT NULL DEFAULT '{}',
    connected_at              timestamptz,
    broken_at                 timestamptz,
    broken_reason             text,
    -- One reconnect prompt per breakage; where it was posted, to update it in place.
    reconnect_prompted_at     timestamptz,
    reconnect_reminded_at     timestamptz,
    reconnect_prompt_channel  text,
    reconnect_prompt_ts       text,
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT connected_requires_token CHECK (
        state <> 'connected' OR (
            refresh_token_ciphertext IS NOT NULL
            AND octet_length(refresh_token_ciphertext) > 28
            AND token_key_id IS NOT NULL
            AND google_email IS NOT NULL
            AND connected_at IS NOT NULL)),
    CONSTRAINT tokens_only_while_connected CHECK (
        state = 'connected' OR (refresh_token_ciphertext IS NULL AND access_token_ciphertext IS NULL)),
    CONSTRAINT needs_reconnect_says_why CHECK (
        state <> 'needs_reconnect' OR (broken_at IS NOT NULL AND broken_reason IS NOT NULL)),
    CONSTRAINT access_token_has_expiry CHECK (
        (access_token_ciphertext IS NULL) = (access_token_expires_at IS NULL))
);

-- OAuth `state` values: only a SHA-256 of the random value is stored, it is
-- bound to one user, single-use and short-lived.
CREATE TABLE oauth_states (
    state_hash                bytea       PRIMARY KEY CHECK (octet_length(state_hash) = 32),
    user_id                   text        NOT NULL REFERENCES slack_users (user_id) ON DELETE CASCADE,
    pkce_verifier_ciphertext  bytea       NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now(),
    expires_at                timestamptz NOT NULL,
    used_at                   timestamptz,
    CONSTRAINT expires_after_creation CHECK (expires_at > created_at),
    CONSTRAINT short_lived CHECK (expires_at <= created_at + interval '1 hour')
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);

-- Encryption-key canaries: a value encrypted under each key id, so a wrong
-- TOKEN_ENCRYPTION_KEY stops start-up instead of failing per user.
CREATE TABLE vault_keys (
    key_id      text        PRIMARY KEY,
    canary      bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every inbound Slack event, keyed by Slack's event_id: the dedupe across
-- HTTP retries and Socket Mode connections. Commands and interactions carry
-- no event_id; they get one derived from their trigger_id.
CREATE TABLE slack_events (
    event_id     text        PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 255),
    team_id      text,
    kind         text        NOT NULL,
    source       text        NOT NULL CHECK (source IN ('http', 'socket_mode', 'console')),
    retry_num    integer     CHECK (retry_num >= 0),
    payload      jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slack_events_received ON slack_events (received_at);

-- One DM exchange: the user's message and robeing's reply. Idempotent on the
-- user message's channel + ts, so a redelivered message is the same exchange.
CREATE TABLE exchanges (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         text        NOT NULL REFERENCES slack_users (user_id) ON DELETE CASCADE,
    channel_id      text        NOT NULL,
    thread_ts       text,
    user_ts         text        NOT NULL,
    user_text       text        NOT NULL,
    reply_text      text,
    reply_ts        text,
    status          text        NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'replied', 'failed')),
    failure_reason  text,
    event_id        text        REFERENCES slack_events (event_id) ON DELETE SET NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    replied_at      timestamptz,
    memorized_at    timestamptz,
    CONSTRAINT one_exchange_per_message UNIQUE (channel_id, user_ts),
    CONSTRAINT replied_has_reply CHECK (
        status <> 'replied' OR (reply_text IS NOT NULL AND reply_ts IS NOT NULL AND replied_at IS NOT NULL)),
    CONSTRAINT failed_says_why CHECK (status <> 'failed' OR failure_reason IS NOT NULL),
    CONSTRAINT memorized_after_reply CHECK (memorized_at IS NULL OR status = 'replied')
);
CREATE INDEX exchanges_user_recent ON exchanges (user_id, received_at DESC);

-- The durable outbox: every side effect that must not be lost (replies,
-- ChromaDB upserts, briefing deliveries, prompts). Claimed with
-- FOR UPDATE SKIP LOCKED; a claim is a lease, so a crashed worker's job is
-- picked up again when `locked_until` passes. `dedupe_key` makes enqueueing
-- idempotent ("reply:<event_id>", "memory:<exchange id>", ...).
CREATE TABLE jobs (
    id            bigserial   PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind ~ '^[a-z_]+$'),
    dedupe_key    text        UNIQUE,
    payload       jsonb       NOT NULL,
    team_id       text,
    state         text        NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  integer     NOT NULL DEFAULT 12 CHECK (max_attempts > 0),
    run_at        timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    CONSTRAINT running_has_lease CHECK (state <> 'running' OR locked_until IS NOT NULL),
    CONSTRAINT finished_when_final CHECK ((state IN ('done', 'dead')) = (finished_at IS NOT NULL)),
    CONSTRAINT dead_says_why CHECK (state <> 'dead' OR last_error IS NOT NULL)
);
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_backlog ON jobs (kind, created_at) WHERE state IN ('queued', 'running');

-- Briefings. A daily briefing is claimed (inserted) before it is composed or
-- sent: the unique index makes "exactly once per user per local date" hold
-- across restarts and replicas. On-demand ones (/brief, CLI) are not limited.
CREATE TABLE briefings (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         text        NOT NULL REFERENCES slack_users (user_id) ON DELETE CASCADE,
    local_date      date        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('daily', 'on_demand')),
    trigger         text        NOT NULL CHECK (trigger IN ('scheduler', 'catch_up', 'cron', 'command', 'cli', 'app_home')),
    status          text        NOT NULL DEFAULT 'claimed'
                    CHECK (status IN ('claimed', 'delivered', 'failed', 'skipped')),
    email_status    text        CHECK (email_status IN ('ok', 'not_connected', 'needs_reconnect', 'error', 'not_configured', 'not_requested')),
    news_status     text        CHECK (news_status IN ('ok', 'partial', 'error', 'not_requested')),
    email_detail    text,
    news_detail     text,
    channel_id      text,
    message_ts      text,
    skip_reason     text,
    failure_reason  text,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    CONSTRAINT delivered_has_message CHECK (
        status <> 'delivered' OR (message_ts IS NOT NULL AND delivered_at IS NOT NULL
                                  AND email_status IS NOT NULL AND news_status IS NOT NULL)),
    CONSTRAINT skipped_says_why CHECK (status <> 'skipped' OR skip_reason IS NOT NULL),
    CONSTRAINT failed_says_why CHECK (status <> 'failed' OR failure_reason IS NOT NULL)
);
CREATE UNIQUE INDEX briefings_one_daily_per_local_date
    ON briefings (user_id, local_date) WHERE kind = 'daily';
CREATE INDEX briefings_user_recent ON briefings (user_id, claimed_at DESC);
