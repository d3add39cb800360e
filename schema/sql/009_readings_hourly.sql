-- Plain PostgreSQL only: an hourly rollup of readings, so that 1-hour and 1-day buckets over
-- weeks do not aggregate every raw row on read (a 30-day hourly query of one equipment reads
-- 216k rows there). TimescaleDB has its continuous aggregates instead (007_readings_1h.timescale.sql).
--
-- Filled on read (store/telemetry.py): a bucketed query makes sure its equipment's closed hours
-- are rolled up, remembers the rolled-up span in readings_hourly_range, and computes the hours
-- after it from readings, as a real-time aggregate does. Readings stored for an hour that is
-- already rolled up are noted in readings_hourly_stale by the writer, and that hour is rolled
-- up again on the next read.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    CREATE TABLE IF NOT EXISTS readings_hourly (
        tenant_id    text NOT NULL,
        equipment_id text NOT NULL,
        sensor       text NOT NULL,
        bucket       timestamptz NOT NULL,
        sum          double precision NOT NULL,
        count        bigint NOT NULL,
        min          double precision NOT NULL,
        max          double precision NOT NULL,
        last         double precision NOT NULL,
        last_ts      timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, equipment_id, sensor, bucket)
    );
    -- [lo, hi): the hours of this equipment that readings_hourly holds (hours without readings
    -- have no row there).
    CREATE TABLE IF NOT EXISTS readings_hourly_range (
        tenant_id    text NOT NULL,
        equipment_id text NOT NULL,
        lo           timestamptz NOT NULL,
        hi           timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, equipment_id),
        CHECK (lo <= hi)
    );
    CREATE TABLE IF NOT EXISTS readings_hourly_stale (
        tenant_id    text NOT NULL,
        equipment_id text NOT NULL,
        bucket       timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, equipment_id, bucket)
    );
    PERFORM wellpulse_enable_rls(t)
    FROM unnest(ARRAY['readings_hourly', 'readings_hourly_range', 'readings_hourly_stale']) AS t;
END;
$$;
