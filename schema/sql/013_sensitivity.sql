-- Anomaly sensitivity of an equipment's default anomaly rule ("low", "medium", "high"); NULL: the
-- tenant's choice for the equipment type, else the tenant's default (tenants.settings), else medium.
ALTER TABLE equipment ADD COLUMN IF NOT EXISTS anomaly_sensitivity text
    CHECK (anomaly_sensitivity IN ('low', 'medium', 'high'));
