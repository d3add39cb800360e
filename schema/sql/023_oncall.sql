-- Notifications (issue 12), on-call: SMS channels, per-user preferences, on-call schedules, escalation chains
-- and the escalations running them, and deliveries addressed to one person.

-- SMS through a provider's HTTP endpoint (store.senders).
ALTER TABLE notification_channels DROP CONSTRAINT IF EXISTS notification_channels_kind_check;
ALTER TABLE notification_channels ADD CONSTRAINT notification_channels_kind_check
    CHECK (kind IN ('email', 'webhook', 'slack', 'teams', 'sms'));

-- A user's own settings: which of their media (email, sms, in_app) hear of each severity, quiet hours in the
-- tenant's time zone (critical alerts come through them), and the number SMS goes to. No row: the defaults
-- (notify.preferences.Preferences()).
CREATE TABLE IF NOT EXISTS notification_preferences (
    tenant_id   text NOT NULL REFERENCES tenants (id),
    user_id     uuid NOT NULL REFERENCES users (id),
    channels    jsonb NOT NULL,
    quiet_start time,
    quiet_end   time,
    phone       text CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- Who is on call (notify.oncall): rotations and overrides, checked whole by the API before they are stored.
CREATE TABLE IF NOT EXISTS oncall_schedules (
    tenant_id  text NOT NULL REFERENCES tenants (id),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    rotations  jsonb NOT NULL,
    overrides  jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS oncall_schedules_name
    ON oncall_schedules (tenant_id, lower(name)) WHERE deleted_at IS NULL;

-- Steps (after N seconds unacknowledged: users, schedules, channels), then the whole chain `repeat` times more.
CREATE TABLE IF NOT EXISTS escalation_chains (
    tenant_id  text NOT NULL REFERENCES tenants (id),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    steps      jsonb NOT NULL,
    repeat     integer NOT NULL DEFAULT 0 CHECK (repeat BETWEEN 0 AND 100),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS escalation_chains_name
    ON escalation_chains (tenant_id, lower(name)) WHERE deleted_at IS NULL;

-- One running chain per alert and chain, started in the transaction that routes the alert's opening event.
-- step/round: the next step to fire; next_at: when (NULL: finished or stopped). Firing a step plans its
-- deliveries and moves step/round/next_at in one transaction, so a restart neither repeats nor skips a step.
CREATE TABLE IF NOT EXISTS escalations (
    tenant_id  text NOT NULL REFERENCES tenants (id),
    alert_id   bigint NOT NULL REFERENCES alerts (id),
    chain_id   uuid NOT NULL,
    event_seq  bigint NOT NULL REFERENCES alert_events (seq),
    route      text NOT NULL DEFAULT '',
    step       integer NOT NULL DEFAULT 0 CHECK (step >= 0),
    round      integer NOT NULL DEFAULT 0 CHECK (round >= 0),
    started_at timestamptz NOT NULL,
    next_at    timestamptz,
    stopped    text,
    PRIMARY KEY (tenant_id, alert_id, chain_id),
    FOREIGN KEY (tenant_id, chain_id) REFERENCES escalation_chains (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS escalations_due ON escalations (tenant_id, next_at) WHERE next_at IS NOT NULL;

-- A delivery to one person (an escalation step's user, by their preferences): the address it goes to, and its
-- idempotency key "<event seq>:<round>:<step>:<user or channel>:<medium>" instead of (event, channel, reminder).
ALTER TABLE notification_deliveries ADD COLUMN IF NOT EXISTS recipient_user uuid;
ALTER TABLE notification_deliveries ADD COLUMN IF NOT EXISTS recipient text
    CHECK (length(recipient) <= 320);
ALTER TABLE notification_deliveries ADD COLUMN IF NOT EXISTS escalation_key text;
ALTER TABLE notification_deliveries ADD COLUMN IF NOT EXISTS escalation_step integer;
DROP INDEX IF EXISTS notification_deliveries_key;
CREATE UNIQUE INDEX IF NOT EXISTS notification_deliveries_key
    ON notification_deliveries (tenant_id, event_seq, channel_id, reminder) WHERE escalation_key IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS notification_deliveries_escalation_key
    ON notification_deliveries (tenant_id, escalation_key) WHERE escalation_key IS NOT NULL;

SELECT wellpulse_enable_rls(t)
FROM unnest(ARRAY['notification_preferences', 'oncall_schedules', 'escalation_chains', 'escalations']) AS t;

-- /health: how many enabled channels of each kind failed each of their last `n` finished deliveries, across
-- tenants (counts only: /health is public).
CREATE INDEX IF NOT EXISTS notification_deliveries_channel
    ON notification_deliveries (tenant_id, channel_id, created_at DESC);
CREATE OR REPLACE FUNCTION wellpulse_failing_channel_counts(n integer)
    RETURNS TABLE (kind text, failing bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT f.kind, count(*) FROM (
        SELECT c.kind FROM public.notification_channels c
        CROSS JOIN LATERAL (SELECT d.status FROM public.notification_deliveries d
                            WHERE d.tenant_id = c.tenant_id AND d.channel_id = c.id AND d.status <> 'pending'
                            ORDER BY d.created_at DESC LIMIT n) last
        WHERE c.deleted_at IS NULL AND c.enabled
        GROUP BY c.tenant_id, c.id, c.kind
        HAVING count(*) = n AND bool_and(last.status = 'failed')) f
    GROUP BY f.kind
$$;
