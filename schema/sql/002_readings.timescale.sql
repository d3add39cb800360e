-- TimescaleDB only: readings become a hypertable with compression, a 1-minute
-- continuous aggregate and retention. The runner applies this file only when the
-- extension is available, and sets the retention and compression horizons after it.

SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'), if_not_exists => true,
                         migrate_data => true);

ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant_id, equipment_id, sensor',
    timescaledb.compress_orderby = 'ts DESC'
);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT tenant_id, equipment_id, sensor,
       time_bucket(INTERVAL '1 minute', ts) AS bucket,
       avg(value) AS avg, min(value) AS min, max(value) AS max,
       last(value, ts) AS last, count(*) AS count
FROM readings
GROUP BY tenant_id, equipment_id, sensor, bucket
WITH NO DATA;

-- Refreshes the last two days each minute; late store-and-forward data older than that
-- is still served, because the aggregate is real-time (materialized_only = false).
SELECT add_continuous_aggregate_policy('readings_1m',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '1 minute', if_not_exists => true);
