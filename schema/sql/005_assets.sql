-- The asset registry: wells, equipment details and sensors, which equipment serves which
-- well, maintenance records and daily production. Later migrations (sync, rules) build
-- on these tables.

-- One call per tenant-owned table instead of a DO block in every migration.
CREATE OR REPLACE FUNCTION wellpulse_enable_rls(t text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I'
                   ' USING (tenant_id = current_setting(''wellpulse.tenant_id'', true))'
                   ' WITH CHECK (tenant_id = current_setting(''wellpulse.tenant_id'', true))', t);
END;
$$;

CREATE TABLE IF NOT EXISTS wells (
    tenant_id  text NOT NULL REFERENCES tenants (id),
    id         text NOT NULL CHECK (id ~ '^[A-Za-z0-9_-]{1,128}$'),
    -- The US well API number, digits only (10, 12 or 14); the API formats it with dashes.
    api_number text NOT NULL CHECK (api_number ~ '^[0-9]{10}([0-9]{2}){0,2}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    lease      text,
    operator   text,
    field      text,
    status     text NOT NULL DEFAULT 'active'
               CHECK (status IN ('active', 'inactive', 'plugged_and_abandoned', 'drilling')),
    latitude   double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude  double precision CHECK (longitude BETWEEN -180 AND 180),
    spud_date  date,
    metadata   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK ((latitude IS NULL) = (longitude IS NULL))
);
-- A live well's API number is unique in its tenant; a deleted well frees it.
CREATE UNIQUE INDEX IF NOT EXISTS wells_api_number ON wells (tenant_id, api_number) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS wells_location ON wells (tenant_id, latitude, longitude) WHERE deleted_at IS NULL;

ALTER TABLE equipment ADD COLUMN IF NOT EXISTS serial text;
ALTER TABLE equipment ADD COLUMN IF NOT EXISTS manufacturer text;
ALTER TABLE equipment ADD COLUMN IF NOT EXISTS install_date date;
-- Preventive maintenance is due this many days after the last finished maintenance
-- (or the install date); NULL: no schedule.
ALTER TABLE equipment ADD COLUMN IF NOT EXISTS maintenance_interval_days integer
    CHECK (maintenance_interval_days BETWEEN 1 AND 3650);

-- Several wells may share one piece of equipment (a tank battery), and a well has many.
CREATE TABLE IF NOT EXISTS equipment_wells (
    tenant_id    text NOT NULL,
    equipment_id text NOT NULL,
    well_id      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, equipment_id, well_id),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id),
    FOREIGN KEY (tenant_id, well_id) REFERENCES wells (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS equipment_wells_well ON equipment_wells (tenant_id, well_id);

-- The sensors an equipment reports: unit, valid range, how often a value is expected.
CREATE TABLE IF NOT EXISTS equipment_sensors (
    tenant_id                 text NOT NULL,
    equipment_id              text NOT NULL,
    name                      text NOT NULL CHECK (name ~ '^[a-z0-9_]{1,64}$'),
    unit                      text NOT NULL DEFAULT '',
    min_value                 double precision,
    max_value                 double precision,
    expected_interval_seconds integer CHECK (expected_interval_seconds BETWEEN 1 AND 86400 * 7),
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, equipment_id, name),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id),
    CHECK (min_value IS NULL OR max_value IS NULL OR min_value < max_value)
);

-- A maintenance job on one equipment. ended_at NULL: still in progress, and while it is the
-- equipment's alerts are silenced. version counts edits (offline sync compares it).
CREATE TABLE IF NOT EXISTS maintenance_records (
    tenant_id    text NOT NULL,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_id text NOT NULL,
    kind         text NOT NULL DEFAULT 'preventive'
                 CHECK (kind IN ('preventive', 'corrective', 'inspection', 'failure_repair')),
    description  text NOT NULL DEFAULT '',
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    performed_by text,
    created_by   text NOT NULL,
    source       text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'sync')),
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX IF NOT EXISTS maintenance_equipment ON maintenance_records (tenant_id, equipment_id, started_at DESC);

-- One record per well and day (regulatory reporting). Volumes are never negative; a day
-- has at most 24 hours of runtime.
CREATE TABLE IF NOT EXISTS production_records (
    tenant_id     text NOT NULL,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    well_id       text NOT NULL,
    day           date NOT NULL,
    oil_bbl       double precision NOT NULL DEFAULT 0 CHECK (oil_bbl >= 0),
    gas_mcf       double precision NOT NULL DEFAULT 0 CHECK (gas_mcf >= 0),
    water_bbl     double precision NOT NULL DEFAULT 0 CHECK (water_bbl >= 0),
    runtime_hours double precision CHECK (runtime_hours BETWEEN 0 AND 24),
    tubing_psi    double precision,
    casing_psi    double precision,
    line_psi      double precision,
    temperature_f double precision,
    notes         text,
    created_by    text NOT NULL,
    source        text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'import', 'sync')),
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, well_id) REFERENCES wells (tenant_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS production_well_day ON production_records (tenant_id, well_id, day)
    WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS production_day ON production_records (tenant_id, day);

SELECT wellpulse_enable_rls(t)
FROM unnest(ARRAY['wells', 'equipment_wells', 'equipment_sensors', 'maintenance_records',
                  'production_records']) AS t;
