-- Each sensor value's quality as its source reported it (schema.telemetry.Reading.quality): NULL is good, the
-- common case, which costs nothing but a bit in the row's null map; 'uncertain' or 'bad' otherwise. Bad values
-- are stored with their flag but not learned by the models; `GET .../readings?include_quality=true` shows it.
--
-- Nullable and without a default, so that on TimescaleDB the column is added to a hypertable with compression
-- enabled (which refuses columns with constraints or volatile defaults) without rewriting a chunk. The CHECK is
-- added where the table is a plain one; there the writer's validated values are what it guards anyway.
ALTER TABLE readings ADD COLUMN IF NOT EXISTS quality text;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'readings_quality_known') THEN
        ALTER TABLE readings ADD CONSTRAINT readings_quality_known CHECK (quality IN ('uncertain', 'bad'));
    END IF;
END $$;
