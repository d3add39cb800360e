-- A facility's permit limit: a threshold may cover the wells of one field (`wells.field`, the facility a
-- permit names) instead of one well or the whole tenant. One scope at most.
ALTER TABLE emission_thresholds ADD COLUMN IF NOT EXISTS field text
    CHECK (field IS NULL OR length(field) BETWEEN 1 AND 200);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'emission_thresholds_one_scope') THEN
        ALTER TABLE emission_thresholds ADD CONSTRAINT emission_thresholds_one_scope
            CHECK (well_id IS NULL OR field IS NULL);
    END IF;
END
$$;
