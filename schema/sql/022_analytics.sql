-- Analytics (issue 17): the equipment-health dashboard reads each equipment's alerts of a range
-- (alerts_tenant_opened is by tenant alone, and alerts_one_open only holds the unresolved ones).
CREATE INDEX IF NOT EXISTS alerts_equipment_opened ON alerts (tenant_id, equipment_id, opened_at);
