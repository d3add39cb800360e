-- Core tables. Applies on plain PostgreSQL and on TimescaleDB alike; the TimescaleDB
-- specifics (hypertable, compression, aggregates, retention) live in *.timescale.sql.

CREATE TABLE IF NOT EXISTS wellpulse_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE IF NOT EXISTS tenants (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name       text NOT NULL,
    active     boolean NOT NULL DEFAULT true,
    settings   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);

CREATE TABLE IF NOT EXISTS equipment (
    tenant_id  text NOT NULL REFERENCES tenants (id),
    id         text NOT NULL CHECK (id ~ '^[A-Za-z0-9_-]{1,128}$'),
    name       text NOT NULL DEFAULT '',
    type       text NOT NULL DEFAULT 'other'
               CHECK (type IN ('pump_jack', 'compressor', 'separator', 'tank_battery', 'meter', 'other')),
    status     text NOT NULL DEFAULT 'operational'
               CHECK (status IN ('operational', 'maintenance', 'failed', 'decommissioned')),
    dedicated  boolean NOT NULL DEFAULT false,
    metadata   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

-- One row per sensor value. The primary key is the idempotency key of ingest:
-- a gateway that resends after an outage never doubles a row.
CREATE TABLE IF NOT EXISTS readings (
    tenant_id    text NOT NULL,
    equipment_id text NOT NULL,
    sensor       text NOT NULL,
    ts           timestamptz NOT NULL,
    value        double precision NOT NULL,
    PRIMARY KEY (tenant_id, equipment_id, sensor, ts)
);

CREATE TABLE IF NOT EXISTS alert_rules (
    tenant_id      text NOT NULL REFERENCES tenants (id),
    id             text NOT NULL CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    equipment_id   text,
    equipment_type text,
    kind           text NOT NULL CHECK (kind IN ('threshold', 'anomaly', 'stale_data', 'stuck_sensor')),
    params         jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE IF NOT EXISTS alerts (
    id              bigserial PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id),
    equipment_id    text NOT NULL,
    rule_id         text NOT NULL,
    state           text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message         text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    opened_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    ack_comment     text,
    escalated_at    timestamptz,
    resolved_at     timestamptz
);
-- The dedup key: at most one alert that is not resolved per (tenant, equipment, rule).
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open
    ON alerts (tenant_id, equipment_id, rule_id) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_tenant_opened ON alerts (tenant_id, opened_at DESC);

-- Every change of an alert, in one global order; WebSocket clients resume from a seq.
CREATE TABLE IF NOT EXISTS alert_events (
    seq          bigserial PRIMARY KEY,
    tenant_id    text NOT NULL,
    alert_id     bigint NOT NULL REFERENCES alerts (id),
    equipment_id text NOT NULL,
    rule_id      text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('opened', 'updated', 'escalated', 'acknowledged', 'resolved')),
    state        text NOT NULL,
    severity     text NOT NULL,
    message      text NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    actor        text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_events_tenant_seq ON alert_events (tenant_id, seq);

CREATE TABLE IF NOT EXISTS model_checkpoints (
    tenant_id       text NOT NULL,
    equipment_id    text NOT NULL,
    model_version   text NOT NULL,
    state           bytea NOT NULL,
    last_learned_ts timestamptz,
    samples_seen    bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, equipment_id)
);
