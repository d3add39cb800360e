-- Alert rules over the API, silences, and alerts held back while their equipment or rule is silenced.

-- Rules: a name and description for people, a severity of their own (NULL: the one in params,
-- as rules written before this migration keep it), and who created them.
ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS name text NOT NULL DEFAULT '' CHECK (length(name) <= 200);
ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS description text NOT NULL DEFAULT ''
    CHECK (length(description) <= 2000);
ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS severity text CHECK (severity IN ('info', 'warning', 'critical'));
ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS created_by text;
-- Every kind models.rules.build_rule knows (failure_risk was missing, rate_of_change is new).
ALTER TABLE alert_rules DROP CONSTRAINT IF EXISTS alert_rules_kind_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_kind_check CHECK (
    kind IN ('threshold', 'rate_of_change', 'stale_data', 'stuck_sensor', 'anomaly', 'failure_risk'));
-- A rule applies to one equipment, one equipment type, or (neither) the whole tenant.
ALTER TABLE alert_rules DROP CONSTRAINT IF EXISTS alert_rules_one_scope;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_one_scope CHECK (equipment_id IS NULL OR equipment_type IS NULL);

-- A manual resolve says who and why (an automatic one leaves both NULL).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolved_by text;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolve_comment text;

-- A silence: no alert opens (or pages anyone) for its equipment and/or rule while now is in
-- [starts_at, ends_at) and it was not cancelled. DELETE in the API cancels; the row stays.
CREATE TABLE IF NOT EXISTS silences (
    tenant_id    text NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_id text,
    rule_id      text CHECK (rule_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    cancelled_by text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id),
    CHECK (equipment_id IS NOT NULL OR rule_id IS NOT NULL),
    CHECK (ends_at > starts_at)
);
CREATE INDEX IF NOT EXISTS silences_live ON silences (tenant_id, ends_at) WHERE cancelled_at IS NULL;

-- An alert whose condition holds while its target is silenced: the models think it open, the
-- operators have not been told. One per dedup key; it becomes an alert when the silence ends
-- (TenantActor housekeeping) and disappears when the condition clears first.
CREATE TABLE IF NOT EXISTS suppressed_alerts (
    tenant_id       text NOT NULL REFERENCES tenants (id),
    equipment_id    text NOT NULL,
    rule_id         text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message         text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    suppressed_at   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, equipment_id, rule_id)
);

-- Whether alerts of (equipment, rule) are silenced at p_at: a live silence matching the equipment
-- and/or rule, or the equipment in maintenance (its status, or a maintenance job in progress).
-- SECURITY INVOKER (the default): row-level security applies inside it as anywhere else.
CREATE OR REPLACE FUNCTION wellpulse_silenced(p_tenant text, p_equipment text, p_rule text, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM silences s
        WHERE s.tenant_id = p_tenant AND s.cancelled_at IS NULL AND s.starts_at <= p_at AND s.ends_at > p_at
          AND (s.equipment_id IS NULL OR s.equipment_id = p_equipment)
          AND (s.rule_id IS NULL OR s.rule_id = p_rule)
    ) OR EXISTS (
        SELECT 1 FROM equipment e
        WHERE e.tenant_id = p_tenant AND e.id = p_equipment AND e.status = 'maintenance' AND e.deleted_at IS NULL
    ) OR EXISTS (
        SELECT 1 FROM maintenance_records m
        WHERE m.tenant_id = p_tenant AND m.equipment_id = p_equipment AND m.deleted_at IS NULL
          AND m.started_at <= p_at AND (m.ended_at IS NULL OR m.ended_at > p_at)
    )
$$;

SELECT wellpulse_enable_rls(t) FROM unnest(ARRAY['silences', 'suppressed_alerts']) AS t;
