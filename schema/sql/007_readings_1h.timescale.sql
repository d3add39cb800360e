-- TimescaleDB only: the 1-hour rollup (DESIGN.md section 6), a hierarchical continuous aggregate
-- over readings_1m. 1-hour and 1-day buckets read it instead of re-bucketing minutes.
-- avg is weighted by count, so it is the mean of the hour's raw values (up to floating-point
-- summation order); last is the last minute's last value.

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT tenant_id, equipment_id, sensor,
       time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       sum(avg * count) AS sum, min(min) AS min, max(max) AS max,
       last(last, bucket) AS last, sum(count)::bigint AS count
FROM readings_1m
GROUP BY tenant_id, equipment_id, sensor, time_bucket(INTERVAL '1 hour', bucket)
WITH NO DATA;

-- The same two-day window as readings_1m (which it reads), refreshed after each closed hour.
SELECT add_continuous_aggregate_policy('readings_1h',
    start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => true);
