-- Whether a reading was forwarded late (schema.telemetry.Reading.historical: an edge buffer's backlog, a Sparkplug
-- is_historical metric): true, or NULL for live data, the common case, which costs a bit in the row's null map.
-- Historical readings are learned without opening, updating or resolving alerts; the store keeps the flag so that
-- a model that re-learns from the store after a restart treats them the same, and `GET .../readings
-- ?include_quality=true` shows it.
--
-- Nullable and without a default, as 019's quality: TimescaleDB adds such a column to a hypertable with
-- compression enabled without rewriting a chunk. The CHECK (only true or NULL) goes where the table is plain.
ALTER TABLE readings ADD COLUMN IF NOT EXISTS historical boolean;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'readings_historical_true_or_null') THEN
        ALTER TABLE readings ADD CONSTRAINT readings_historical_true_or_null CHECK (historical);
    END IF;
END $$;
