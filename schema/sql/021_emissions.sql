-- Emissions (issue 17, ESG): what a well's day emitted, computed from its production record, the day's
-- emission activity (flared, vented and fuel gas) and the well's emitting equipment, with emission factors
-- (the defaults live in models/emissions.py with their sources; a tenant's own versions are rows here);
-- permit thresholds, and compliance reports that are never edited or deleted.

-- A day's emission volumes, beside the production record of the same well and day (a separate table so that
-- production's CSV import, export and offline sync stay as they are). NULL: not reported (that source is not
-- computed for the day, and the result says so); 0: reported as none.
CREATE TABLE IF NOT EXISTS emission_activity (
    tenant_id    text NOT NULL,
    well_id      text NOT NULL,
    day          date NOT NULL,
    flared_mcf   double precision CHECK (flared_mcf >= 0),
    vented_mcf   double precision CHECK (vented_mcf >= 0),
    fuel_gas_mcf double precision CHECK (fuel_gas_mcf >= 0),
    version      integer NOT NULL DEFAULT 1,
    updated_by   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, well_id, day),
    FOREIGN KEY (tenant_id, well_id) REFERENCES wells (tenant_id, id)
);

-- A well's emitting equipment: pneumatic devices and fugitive components by type, and its engine's fuel
-- rate (Mcf per running hour) for days whose fuel gas is not metered.
CREATE TABLE IF NOT EXISTS emission_equipment (
    tenant_id                text NOT NULL,
    well_id                  text NOT NULL,
    pneumatic_devices        jsonb NOT NULL DEFAULT '{}'::jsonb,
    components               jsonb NOT NULL DEFAULT '{}'::jsonb,
    engine_fuel_mcf_per_hour double precision CHECK (engine_fuel_mcf_per_hour >= 0),
    version                  integer NOT NULL DEFAULT 1,
    updated_by               text NOT NULL,
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, well_id),
    FOREIGN KEY (tenant_id, well_id) REFERENCES wells (tenant_id, id)
);

-- A tenant's versions of a factor: a change is a new version (append-only), never an edit, so an emission
-- record's factor version always names the number it was computed with.
CREATE TABLE IF NOT EXISTS emission_factors (
    tenant_id  text NOT NULL REFERENCES tenants (id),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    key        text NOT NULL CHECK (key ~ '^[a-z_]+\.[A-Za-z0-9_]+$'),
    version    integer NOT NULL CHECK (version >= 1),
    source     text NOT NULL,
    gas        text,
    value      double precision NOT NULL CHECK (value > 0),
    unit       text NOT NULL,
    citation   text NOT NULL CHECK (length(citation) BETWEEN 1 AND 2000),
    valid_from date NOT NULL,
    valid_to   date CHECK (valid_to IS NULL OR valid_to >= valid_from),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, key, version)
);
DROP TRIGGER IF EXISTS emission_factors_append_only ON emission_factors;
CREATE TRIGGER emission_factors_append_only BEFORE UPDATE OR DELETE ON emission_factors
    FOR EACH ROW EXECUTE FUNCTION wellpulse_append_only();

-- kg of one gas from one source of one well on one day. A recalculation that finds a different amount (a
-- production correction, a new factor version) inserts a new row and marks the old one superseded by it; a
-- day whose production record was deleted has its rows superseded by nothing. The old rows stay.
CREATE TABLE IF NOT EXISTS emissions (
    tenant_id     text NOT NULL,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    well_id       text NOT NULL,
    day           date NOT NULL,
    source        text NOT NULL CHECK (source IN ('flaring', 'venting', 'combustion', 'tank_flashing',
                                                  'pneumatic_devices', 'fugitive_components')),
    gas           text NOT NULL CHECK (gas IN ('CO2', 'CH4', 'N2O', 'VOC')),
    kg            double precision NOT NULL CHECK (kg >= 0),
    co2e_kg       double precision NOT NULL CHECK (co2e_kg >= 0),
    factors       jsonb NOT NULL,
    inputs        jsonb NOT NULL,
    calculated_at timestamptz NOT NULL DEFAULT now(),
    calculated_by text NOT NULL,
    superseded_by uuid,
    superseded_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, well_id) REFERENCES wells (tenant_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS emissions_live
    ON emissions (tenant_id, well_id, day, source, gas) WHERE superseded_at IS NULL;
CREATE INDEX IF NOT EXISTS emissions_day ON emissions (tenant_id, day) WHERE superseded_at IS NULL;

-- The daily job's ledger: one row per tenant and day calculated, so the housekeeping (every few seconds)
-- calculates yesterday once.
CREATE TABLE IF NOT EXISTS emission_daily_runs (
    tenant_id text NOT NULL,
    day       date NOT NULL,
    ran_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day)
);

-- Permit limits: a well's, or the tenant's (well_id NULL), for one gas or CO2e over a period.
CREATE TABLE IF NOT EXISTS emission_thresholds (
    tenant_id    text NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    well_id      text,
    gas          text NOT NULL CHECK (gas IN ('CO2', 'CH4', 'N2O', 'VOC', 'CO2e')),
    period       text NOT NULL CHECK (period IN ('rolling_12_months', 'calendar_month', 'calendar_year')),
    limit_tonnes double precision NOT NULL CHECK (limit_tonnes > 0),
    version      integer NOT NULL DEFAULT 1,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, well_id) REFERENCES wells (tenant_id, id)
);

-- Compliance reports: the PDF and its SHA-256, kept for at least 7 years (there is no deletion path at all).
-- Never edited: the only change a row takes is being superseded once (superseded_by/superseded_at from NULL),
-- which a trigger checks like the audit log's; DELETE and TRUNCATE are refused.
CREATE TABLE IF NOT EXISTS emission_reports (
    tenant_id       text NOT NULL REFERENCES tenants (id),
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    period_start    date NOT NULL,
    period_end      date NOT NULL CHECK (period_end >= period_start),
    well_ids        text[] NOT NULL,
    factor_versions jsonb NOT NULL,
    totals          jsonb NOT NULL,
    content         bytea NOT NULL,
    sha256          text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes      integer NOT NULL,
    supersedes      uuid,
    superseded_by   uuid,
    superseded_at   timestamptz,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS emission_reports_created ON emission_reports (tenant_id, created_at DESC);

CREATE OR REPLACE FUNCTION wellpulse_report_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.superseded_at IS NULL AND NEW.superseded_at IS NOT NULL
       AND (to_jsonb(NEW) - 'superseded_by' - 'superseded_at') = (to_jsonb(OLD) - 'superseded_by' - 'superseded_at')
    THEN
        RETURN NEW;  -- superseded once; nothing else changes
    END IF;
    RAISE EXCEPTION '% is immutable: % refused (a report is superseded, never edited or deleted)',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP TRIGGER IF EXISTS emission_reports_immutable ON emission_reports;
CREATE TRIGGER emission_reports_immutable BEFORE UPDATE OR DELETE ON emission_reports
    FOR EACH ROW EXECUTE FUNCTION wellpulse_report_immutable();
DROP TRIGGER IF EXISTS emission_reports_no_truncate ON emission_reports;
CREATE TRIGGER emission_reports_no_truncate BEFORE TRUNCATE ON emission_reports
    FOR EACH STATEMENT EXECUTE FUNCTION wellpulse_append_only();

SELECT wellpulse_enable_rls(t)
FROM unnest(ARRAY['emission_activity', 'emission_equipment', 'emission_factors', 'emissions',
                  'emission_daily_runs', 'emission_thresholds', 'emission_reports']) AS t;
