-- Notifications (issue 12), first slice: a tenant's channels (email, webhook, Slack, Teams) and one row per
-- delivery of an alert event to a channel, planned from committed `alert_events` by seq.

CREATE TABLE IF NOT EXISTS notification_channels (
    tenant_id    text NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind         text NOT NULL CHECK (kind IN ('email', 'webhook', 'slack', 'teams')),
    enabled      boolean NOT NULL DEFAULT true,
    -- The least severity of the alerts this channel hears of.
    min_severity text NOT NULL DEFAULT 'warning' CHECK (min_severity IN ('info', 'warning', 'critical')),
    -- What the API shows of the channel's settings; never a secret.
    config       jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The write-only settings (SMTP password, webhook secret, Slack/Teams URL) as JSON sealed by
    -- config.secrets.SecretBox (AES-256-GCM, the data key); NULL when the channel has none.
    secret       text,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS notification_channels_name
    ON notification_channels (tenant_id, lower(name)) WHERE deleted_at IS NULL;

-- Up to which alert event seq the tenant's deliveries are planned. Seq order is commit order within a tenant
-- (store.alerts._serialize_tenant_events), so "seq > cursor" misses nothing.
CREATE TABLE IF NOT EXISTS notification_cursors (
    tenant_id text PRIMARY KEY REFERENCES tenants (id),
    seq       bigint NOT NULL CHECK (seq >= 0)
);

CREATE TABLE IF NOT EXISTS notification_deliveries (
    tenant_id       text NOT NULL REFERENCES tenants (id),
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    alert_id        bigint NOT NULL REFERENCES alerts (id),
    event_seq       bigint NOT NULL REFERENCES alert_events (seq),
    event_kind      text NOT NULL,
    channel_id      uuid NOT NULL,
    channel_kind    text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    last_error      text CHECK (length(last_error) <= 2000),
    response_code   integer,
    latency_ms      double precision,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    failed_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES notification_channels (tenant_id, id),
    -- The idempotency key: one delivery of an event to a channel, however often the planner reads it.
    UNIQUE (tenant_id, event_seq, channel_id)
);
CREATE INDEX IF NOT EXISTS notification_deliveries_due
    ON notification_deliveries (tenant_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notification_deliveries_alert ON notification_deliveries (tenant_id, alert_id);

SELECT wellpulse_enable_rls(t)
FROM unnest(ARRAY['notification_channels', 'notification_cursors', 'notification_deliveries']) AS t;

ALTER TABLE alert_events DROP CONSTRAINT IF EXISTS alert_events_kind_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_kind_check CHECK (kind IN (
    'opened', 'updated', 'escalated', 'acknowledged', 'resolved', 'cleared', 'shelved', 'unshelved',
    'suppressed', 'unsuppressed', 'verdict', 'notification_failed'));
