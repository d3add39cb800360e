-- Notifications (issue 12), second slice: a tenant's routing policy tree (notify.routing) and the groups it
-- gathers alert events into before one message lists them.

-- One policy document per tenant; no row: every enabled channel hears of every alert (the first slice).
CREATE TABLE IF NOT EXISTS notification_policies (
    tenant_id  text PRIMARY KEY REFERENCES tenants (id),
    document   jsonb NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A route's group (the alerts whose group_by fields agree): when its next message is due, and after what.
CREATE TABLE IF NOT EXISTS notification_groups (
    tenant_id      text NOT NULL REFERENCES tenants (id),
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    route          text NOT NULL,
    group_key      text NOT NULL,
    channels       uuid[] NOT NULL,
    group_interval double precision NOT NULL CHECK (group_interval >= 0),
    -- Reminders: while an alert the group sent is still open (not acknowledged, not resolved), the group
    -- sends it again every repeat_interval seconds; reminders counts them (part of the deliveries' key).
    repeat_interval double precision NOT NULL DEFAULT 14400 CHECK (repeat_interval >= 0),
    reminders      integer NOT NULL DEFAULT 0,
    mute_timings   text[] NOT NULL DEFAULT '{}',
    -- NULL: nothing waits to be sent.
    next_flush_at  timestamptz,
    last_sent_at   timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, route, group_key)
);
CREATE INDEX IF NOT EXISTS notification_groups_due
    ON notification_groups (tenant_id, next_flush_at) WHERE next_flush_at IS NOT NULL;

-- The events a group gathered; flushed_at is set in the transaction that plans the message listing them.
CREATE TABLE IF NOT EXISTS notification_group_items (
    tenant_id  text NOT NULL,
    group_id   uuid NOT NULL,
    event_seq  bigint NOT NULL REFERENCES alert_events (seq),
    flushed_at timestamptz,
    PRIMARY KEY (tenant_id, group_id, event_seq),
    FOREIGN KEY (tenant_id, group_id) REFERENCES notification_groups (tenant_id, id)
);

-- A grouped message lists several events; event_seq stays the newest of them (the idempotency key with the
-- channel), event_seqs all of them (NULL: the one event_seq). route names the policy route that planned it.
ALTER TABLE notification_deliveries ADD COLUMN IF NOT EXISTS event_seqs bigint[];
ALTER TABLE notification_deliveries ADD COLUMN IF NOT EXISTS route text;
-- 0: the first message of its events; n: the group's n-th reminder. The idempotency key gains it.
ALTER TABLE notification_deliveries ADD COLUMN IF NOT EXISTS reminder integer NOT NULL DEFAULT 0;
ALTER TABLE notification_deliveries DROP CONSTRAINT IF EXISTS notification_deliveries_tenant_id_event_seq_channel_id_key;
CREATE UNIQUE INDEX IF NOT EXISTS notification_deliveries_key
    ON notification_deliveries (tenant_id, event_seq, channel_id, reminder);

-- Acknowledge links (notify/acklinks.py) used: the token's nonce, recorded in the transaction that
-- acknowledges, so a link acknowledges once.
CREATE TABLE IF NOT EXISTS ack_link_uses (
    tenant_id text NOT NULL REFERENCES tenants (id),
    nonce     text NOT NULL CHECK (nonce ~ '^[0-9a-f]{32}$'),
    alert_id  bigint NOT NULL REFERENCES alerts (id),
    used_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, nonce)
);

SELECT wellpulse_enable_rls(t)
FROM unnest(ARRAY['notification_policies', 'notification_groups', 'notification_group_items', 'ack_link_uses'])
    AS t;
