-- Notifications (issue 12), in-app: one row per user who may read alerts, per alert event that notifies,
-- planned by the notifier in the transaction that plans the channel deliveries of the same events.

CREATE TABLE IF NOT EXISTS in_app_notifications (
    tenant_id  text NOT NULL REFERENCES tenants (id),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id),
    alert_id   bigint NOT NULL REFERENCES alerts (id),
    event_seq  bigint NOT NULL REFERENCES alert_events (seq),
    event_kind text NOT NULL,
    -- 0: the first notice of the event; n: its n-th reminder (as notification_deliveries.reminder).
    reminder   integer NOT NULL DEFAULT 0 CHECK (reminder >= 0),
    title      text NOT NULL CHECK (length(title) <= 500),
    body       text NOT NULL DEFAULT '' CHECK (length(body) <= 4000),
    severity   text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    created_at timestamptz NOT NULL,
    read_at    timestamptz,
    deleted_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    -- The idempotency key: a re-read of the same events plans nothing twice.
    UNIQUE (tenant_id, user_id, event_seq, reminder)
);
-- A user's inbox, newest first, and its unread count.
CREATE INDEX IF NOT EXISTS in_app_notifications_inbox
    ON in_app_notifications (tenant_id, user_id, created_at DESC) WHERE deleted_at IS NULL;

SELECT wellpulse_enable_rls(t) FROM unnest(ARRAY['in_app_notifications']) AS t;
