-- Alarm management (issue 11, after ISA-18.2 and OPC UA Part 9): shelving, latching, suppression by
-- design and out-of-service sensors, chattering alerts held open with a count, and operators' verdicts.

-- Two more states: shelved (an operator put it aside for a stated time) and suppressed (by design: its
-- sensor is out of service, its equipment is not running, or an upstream cause is active).
ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_state_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_state_check
    CHECK (state IN ('open', 'acknowledged', 'shelved', 'suppressed', 'resolved'));
ALTER TABLE alert_events DROP CONSTRAINT IF EXISTS alert_events_kind_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_kind_check CHECK (kind IN (
    'opened', 'updated', 'escalated', 'acknowledged', 'resolved', 'cleared', 'shelved', 'unshelved',
    'suppressed', 'unsuppressed', 'verdict'));

ALTER TABLE alerts
    -- How many times the condition came (back) while this alert stayed open: chattering held open,
    -- a latched or shelved alert whose condition cleared and returned.
    ADD COLUMN IF NOT EXISTS occurrences integer NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    -- The condition cleared but the alert stays (latched and not acknowledged, or shelved).
    ADD COLUMN IF NOT EXISTS cleared_at timestamptz,
    -- The rule's options and the sensors the alert is about, as they were when it opened.
    ADD COLUMN IF NOT EXISTS latched boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS requires_running boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS low_pressure boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS sensors text[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS shelved_at timestamptz,
    ADD COLUMN IF NOT EXISTS shelved_until timestamptz,
    ADD COLUMN IF NOT EXISTS shelved_by text,
    ADD COLUMN IF NOT EXISTS shelve_reason text CHECK (length(shelve_reason) <= 1000),
    ADD COLUMN IF NOT EXISTS suppressed_reason text
        CHECK (suppressed_reason IN ('out_of_service', 'maintenance', 'equipment_stopped', 'upstream')),
    -- What a suppressed alert was before (open or acknowledged); it returns to that.
    ADD COLUMN IF NOT EXISTS prior_state text CHECK (prior_state IN ('open', 'acknowledged')),
    ADD COLUMN IF NOT EXISTS verdict text CHECK (verdict IN ('real', 'false_alarm', 'planned')),
    ADD COLUMN IF NOT EXISTS verdict_by text,
    ADD COLUMN IF NOT EXISTS verdict_at timestamptz,
    -- When the equipment's models learned the verdict (NULL: still to be sent to them).
    ADD COLUMN IF NOT EXISTS verdict_applied_at timestamptz;

CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id, seq);
-- KPIs read the openings of a period.
CREATE INDEX IF NOT EXISTS alert_events_tenant_kind_at ON alert_events (tenant_id, kind, occurred_at);
-- The most recent similar alert of an equipment (explanations).
CREATE INDEX IF NOT EXISTS alerts_similar ON alerts (tenant_id, equipment_id, rule_id, resolved_at DESC)
    WHERE state = 'resolved';
CREATE INDEX IF NOT EXISTS alerts_verdict_pending ON alerts (tenant_id, equipment_id)
    WHERE verdict IS NOT NULL AND verdict_applied_at IS NULL;
CREATE INDEX IF NOT EXISTS alerts_shelved ON alerts (tenant_id, shelved_until) WHERE state = 'shelved';

-- A sensor out of service (under repair, known bad): its alerts are suppressed until it returns
-- (DELETE in the API) or `until` passes. One live row per sensor; ended ones stay as history.
CREATE TABLE IF NOT EXISTS sensor_out_of_service (
    tenant_id    text NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_id text NOT NULL,
    sensor       text NOT NULL CHECK (sensor ~ '^[a-z0-9_]{1,64}$'),
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    since        timestamptz NOT NULL DEFAULT now(),
    until        timestamptz,
    created_by   text NOT NULL,
    ended_at     timestamptz,
    ended_by     text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id),
    CHECK (until IS NULL OR until > since)
);
CREATE UNIQUE INDEX IF NOT EXISTS sensor_out_of_service_live
    ON sensor_out_of_service (tenant_id, equipment_id, sensor) WHERE ended_at IS NULL;
SELECT wellpulse_enable_rls('sensor_out_of_service');

-- Why an alert of this equipment is suppressed by design at p_at, or NULL:
--   out_of_service: every sensor it is about is out of service;
--   maintenance / equipment_stopped: its rule needs the equipment running, and it is in maintenance (status
--     or a job in progress) / failed or decommissioned;
--   upstream: a low-pressure alert on equipment that shares a well with a compressor that is down (failed,
--     in maintenance) or has an active warning or critical alert.
-- SECURITY INVOKER (the default): row-level security applies inside it as anywhere else.
CREATE OR REPLACE FUNCTION wellpulse_design_suppression(
    p_tenant text, p_equipment text, p_sensors text[], p_requires_running boolean, p_low_pressure boolean,
    p_at timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN cardinality(p_sensors) > 0 AND NOT EXISTS (
            SELECT 1 FROM unnest(p_sensors) AS s (name) WHERE NOT EXISTS (
                SELECT 1 FROM sensor_out_of_service o
                WHERE o.tenant_id = p_tenant AND o.equipment_id = p_equipment AND o.sensor = s.name
                  AND o.ended_at IS NULL AND o.since <= p_at AND (o.until IS NULL OR o.until > p_at)))
            THEN 'out_of_service'
        WHEN p_requires_running AND (EXISTS (
            SELECT 1 FROM equipment e
            WHERE e.tenant_id = p_tenant AND e.id = p_equipment AND e.status = 'maintenance') OR EXISTS (
            SELECT 1 FROM maintenance_records m
            WHERE m.tenant_id = p_tenant AND m.equipment_id = p_equipment AND m.deleted_at IS NULL
              AND m.started_at <= p_at AND (m.ended_at IS NULL OR m.ended_at > p_at)))
            THEN 'maintenance'
        WHEN p_requires_running AND EXISTS (
            SELECT 1 FROM equipment e
            WHERE e.tenant_id = p_tenant AND e.id = p_equipment AND e.status IN ('failed', 'decommissioned'))
            THEN 'equipment_stopped'
        WHEN p_low_pressure AND EXISTS (
            SELECT 1 FROM equipment_wells mine
            JOIN equipment_wells theirs ON theirs.tenant_id = mine.tenant_id AND theirs.well_id = mine.well_id
                                        AND theirs.equipment_id <> mine.equipment_id
            JOIN equipment c ON c.tenant_id = theirs.tenant_id AND c.id = theirs.equipment_id
                            AND c.type = 'compressor' AND c.deleted_at IS NULL
            WHERE mine.tenant_id = p_tenant AND mine.equipment_id = p_equipment
              AND (c.status IN ('failed', 'maintenance') OR EXISTS (
                  SELECT 1 FROM alerts a
                  WHERE a.tenant_id = c.tenant_id AND a.equipment_id = c.id AND a.cleared_at IS NULL
                    AND a.state IN ('open', 'acknowledged', 'shelved') AND a.severity <> 'info')))
            THEN 'upstream'
    END
$$;
