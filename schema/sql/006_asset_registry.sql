-- The asset registry API (issue 4): what 005_assets.sql does not hold yet.

-- The status an equipment had when starting a maintenance job moved it to 'maintenance';
-- finishing the last open job restores it. NULL when the status was not set by a job
-- (a manual status change clears it: whoever set the status by hand owns it).
ALTER TABLE equipment ADD COLUMN IF NOT EXISTS status_before_maintenance text
    CHECK (status_before_maintenance IN ('operational', 'failed'));

-- A well's timeline (GET /v1/wells/{id}/activities) reads the audit entries about one
-- entity and the alerts of a few equipment, newest first.
CREATE INDEX IF NOT EXISTS audit_log_entity ON audit_log (tenant_id, entity_type, entity_id, at DESC);
CREATE INDEX IF NOT EXISTS alerts_equipment_opened ON alerts (tenant_id, equipment_id, opened_at DESC);
-- Due maintenance: the last finished job per equipment.
CREATE INDEX IF NOT EXISTS maintenance_equipment_ended ON maintenance_records (tenant_id, equipment_id, ended_at DESC)
    WHERE deleted_at IS NULL AND ended_at IS NOT NULL;
