-- The newest stored reading of each sensor, kept by the ingest writer (store/readings.py, copy_readings) in the
-- transaction that stores the readings, so that what an operator's overview screen asks most often ("the latest
-- values of these 20 equipment") is one index range per equipment instead of a walk of the readings index
-- (six probes per five-sensor equipment on plain PostgreSQL; on TimescaleDB every chunk took part in every probe,
-- so the walk looked at the last day only and listed older sensors from the registry).
--
-- A row moves only forward in time (the writer's upsert has `WHERE latest.ts < new.ts`): a late or resent reading
-- never hides a newer one. Updates change no indexed column, so they are HOT updates: the fill factor leaves them
-- room on the row's own page.
CREATE TABLE IF NOT EXISTS latest_readings (
    tenant_id    text NOT NULL,
    equipment_id text NOT NULL,
    sensor       text NOT NULL,
    ts           timestamptz NOT NULL,
    value        double precision NOT NULL,
    PRIMARY KEY (tenant_id, equipment_id, sensor)
) WITH (fillfactor = 50);

SELECT wellpulse_enable_rls('latest_readings');

-- Readings stored before this migration: the newest row of each sensor of every equipment ever registered, found
-- by walking the readings key downwards (one probe per sensor).
INSERT INTO latest_readings (tenant_id, equipment_id, sensor, ts, value)
WITH RECURSIVE walk AS (
    SELECT e.tenant_id, e.id AS equipment_id, top.sensor, top.ts, top.value FROM equipment e CROSS JOIN LATERAL (
        SELECT r.sensor, r.ts, r.value FROM readings r WHERE r.tenant_id = e.tenant_id AND r.equipment_id = e.id
        ORDER BY r.sensor DESC, r.ts DESC LIMIT 1) top
    UNION ALL
    SELECT w.tenant_id, w.equipment_id, next.sensor, next.ts, next.value FROM walk w CROSS JOIN LATERAL (
        SELECT r.sensor, r.ts, r.value FROM readings r WHERE r.tenant_id = w.tenant_id
        AND r.equipment_id = w.equipment_id AND r.sensor < w.sensor ORDER BY r.sensor DESC, r.ts DESC LIMIT 1) next
)
SELECT tenant_id, equipment_id, sensor, ts, value FROM walk
ON CONFLICT (tenant_id, equipment_id, sensor) DO UPDATE SET ts = EXCLUDED.ts, value = EXCLUDED.value
    WHERE latest_readings.ts < EXCLUDED.ts;
