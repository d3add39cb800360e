-- Offline field-data sync (issue 5): the entity tables that 005_assets.sql does not hold (manual
-- gauge readings, inspections, notes, attachments), the append-only field events, the server change
-- log devices pull from, and the bookkeeping of sync itself (devices, chunk receipts, upload
-- sessions, conflicts, per-field stamps).

-- ---------------------------------------------------------------- entities

-- Every synced table carries sync_stamps: per field, [version, device, client time, event id] of its
-- last write (models/sync.py), "*" for the most common one, "@v" the version sync last wrote, "@pending"
-- a conflict held for review. Internal: left out of the change log's data.
ALTER TABLE production_records ADD COLUMN IF NOT EXISTS sync_stamps jsonb;
ALTER TABLE maintenance_records ADD COLUMN IF NOT EXISTS sync_stamps jsonb;

CREATE TABLE IF NOT EXISTS manual_readings (
    tenant_id    text NOT NULL,
    id           uuid NOT NULL,
    equipment_id text NOT NULL,
    sensor       text NOT NULL CHECK (sensor ~ '^[a-z0-9_]{1,64}$'),
    value        double precision NOT NULL,
    unit         text NOT NULL DEFAULT '',
    read_at      timestamptz NOT NULL,
    notes        text,
    created_by   text NOT NULL,
    source       text NOT NULL DEFAULT 'sync' CHECK (source IN ('api', 'sync')),
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    sync_stamps  jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS manual_readings_equipment ON manual_readings (tenant_id, equipment_id, read_at DESC);

-- A safety inspection of one equipment; findings with a severity open the equipment's
-- 'inspection' alert. Concurrent edits wait for a person (strategy manual_review).
CREATE TABLE IF NOT EXISTS inspections (
    tenant_id    text NOT NULL,
    id           uuid NOT NULL,
    equipment_id text NOT NULL,
    well_id      text,
    inspected_at timestamptz NOT NULL,
    inspector    text,
    kind         text NOT NULL DEFAULT 'routine',
    checklist    jsonb NOT NULL DEFAULT '{}'::jsonb,
    findings     jsonb NOT NULL DEFAULT '[]'::jsonb,
    notes        text,
    created_by   text NOT NULL,
    source       text NOT NULL DEFAULT 'sync' CHECK (source IN ('api', 'sync')),
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    sync_stamps  jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id),
    FOREIGN KEY (tenant_id, well_id) REFERENCES wells (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS inspections_equipment ON inspections (tenant_id, equipment_id, inspected_at DESC);

CREATE TABLE IF NOT EXISTS field_notes (
    tenant_id    text NOT NULL,
    id           uuid NOT NULL,
    equipment_id text,
    well_id      text,
    title        text NOT NULL DEFAULT '',
    text         text NOT NULL,
    tags         jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_by   text NOT NULL,
    source       text NOT NULL DEFAULT 'sync' CHECK (source IN ('api', 'sync')),
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    sync_stamps  jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id),
    FOREIGN KEY (tenant_id, well_id) REFERENCES wells (tenant_id, id)
);

-- Photo and document metadata; the bytes live in the attachment storage (store/attachments.py),
-- addressed by tenant and sha256. kept_from: this record is the losing version of that one,
-- kept whole by the keep_both strategy.
CREATE TABLE IF NOT EXISTS attachments (
    tenant_id      text NOT NULL,
    id             uuid NOT NULL,
    equipment_id   text,
    well_id        text,
    parent_entity  text,
    parent_id      uuid,
    filename       text NOT NULL,
    content_type   text NOT NULL DEFAULT 'application/octet-stream',
    size_bytes     bigint CHECK (size_bytes >= 0),
    sha256         text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    caption        text NOT NULL DEFAULT '',
    taken_at       timestamptz,
    content_stored boolean NOT NULL DEFAULT false,
    kept_from      uuid,
    created_by     text NOT NULL,
    source         text NOT NULL DEFAULT 'sync' CHECK (source IN ('api', 'sync')),
    version        integer NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    sync_stamps    jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id),
    FOREIGN KEY (tenant_id, well_id) REFERENCES wells (tenant_id, id)
);

-- ---------------------------------------------------------------- field events (event sourcing)

-- Every change a device synced and every domain event (maintenance_started, failure_reported,
-- ...), in arrival order, with its outcome. The entity tables are their projection. Append-only:
-- the trigger below and the missing UPDATE/DELETE/TRUNCATE grants (store/migrate.py).
CREATE TABLE IF NOT EXISTS field_events (
    tenant_id    text NOT NULL,
    event_id     uuid NOT NULL,
    seq          bigserial NOT NULL,  -- arrival order
    type         text NOT NULL,
    device_id    text,
    actor        text NOT NULL,
    entity_type  text,
    record_id    uuid,
    equipment_id text,
    base_version integer,
    version      integer,
    outcome      text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    effects      jsonb NOT NULL DEFAULT '[]'::jsonb,
    content_hash text NOT NULL,
    upload_id    uuid,
    PRIMARY KEY (tenant_id, event_id)
);

DROP TRIGGER IF EXISTS field_events_append_only ON field_events;
CREATE TRIGGER field_events_append_only BEFORE UPDATE OR DELETE ON field_events
    FOR EACH ROW EXECUTE FUNCTION wellpulse_append_only();
DROP TRIGGER IF EXISTS field_events_no_truncate ON field_events;
CREATE TRIGGER field_events_no_truncate BEFORE TRUNCATE ON field_events
    FOR EACH STATEMENT EXECUTE FUNCTION wellpulse_append_only();

-- ---------------------------------------------------------------- the server change log

-- Every change of a synced record, whoever made it (sync, or the REST API on production and
-- maintenance records), written by triggers: devices pull what happened after their cursor.
-- seq order is commit order within a tenant: the trigger holds a per-tenant lock from its first
-- row until the transaction ends (a device resuming "after seq n" can never skip a slower
-- transaction that drew a smaller seq).
CREATE TABLE IF NOT EXISTS sync_changes (
    tenant_id   text NOT NULL,
    seq         bigserial NOT NULL,
    entity_type text NOT NULL,
    record_id   uuid NOT NULL,
    op          text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    version     integer NOT NULL,
    data        jsonb NOT NULL,
    origin      text NOT NULL,
    -- The origin device's change landed exactly as it sent it: not sent back to that device.
    as_sent     boolean NOT NULL DEFAULT false,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX IF NOT EXISTS sync_changes_record ON sync_changes (tenant_id, entity_type, record_id, version);

-- Statement-level, with transition tables: one INSERT into the log per statement, however many rows.
-- origin: the device syncing (set per transaction by store/sync.py), else 'api'; as_sent: set per
-- statement by store/sync.py for the rows its device's changes made exactly as sent.
CREATE OR REPLACE FUNCTION wellpulse_sync_log() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    origin text := coalesce(nullif(current_setting('wellpulse.sync_origin', true), ''), 'api');
    as_sent boolean := origin <> 'api' AND coalesce(current_setting('wellpulse.sync_as_sent', true), '') = 'true';
    t text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        FOR t IN SELECT DISTINCT tenant_id FROM old_rows ORDER BY 1 LOOP
            PERFORM pg_advisory_xact_lock(hashtext('sync_changes:' || t));
        END LOOP;
        INSERT INTO sync_changes (tenant_id, entity_type, record_id, op, version, data, origin)
        SELECT o.tenant_id, TG_ARGV[0], o.id, 'delete', o.version, to_jsonb(o) - 'tenant_id' - 'sync_stamps', origin
        FROM old_rows o ORDER BY o.id;
        RETURN NULL;
    END IF;
    FOR t IN SELECT DISTINCT tenant_id FROM new_rows ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtext('sync_changes:' || t));
    END LOOP;
    INSERT INTO sync_changes (tenant_id, entity_type, record_id, op, version, data, origin, as_sent)
    SELECT n.tenant_id, TG_ARGV[0], n.id,
           CASE WHEN n.deleted_at IS NOT NULL THEN 'delete' WHEN TG_OP = 'INSERT' THEN 'create' ELSE 'update' END,
           n.version, to_jsonb(n) - 'tenant_id' - 'sync_stamps', origin, as_sent
    FROM new_rows n ORDER BY n.id;
    RETURN NULL;
END;
$$;

-- Versions count edits; sync compares them. An edit outside sync that forgot to bump it gets it bumped.
CREATE OR REPLACE FUNCTION wellpulse_sync_version_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('wellpulse.sync_origin', true), '') = '' AND NEW.version <= OLD.version
       AND (to_jsonb(NEW) - 'version' - 'updated_at' - 'sync_stamps')
           IS DISTINCT FROM (to_jsonb(OLD) - 'version' - 'updated_at' - 'sync_stamps')
    THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END;
$$;

DO $$
DECLARE
    pair text[];
BEGIN
    FOREACH pair SLICE 1 IN ARRAY ARRAY[
        ARRAY['production_records', 'production_record'], ARRAY['maintenance_records', 'maintenance_record'],
        ARRAY['manual_readings', 'manual_reading'], ARRAY['inspections', 'inspection'],
        ARRAY['field_notes', 'note'], ARRAY['attachments', 'attachment']]
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS sync_log_insert ON %I', pair[1]);
        EXECUTE format('CREATE TRIGGER sync_log_insert AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wellpulse_sync_log(%L)', pair[1], pair[2]);
        EXECUTE format('DROP TRIGGER IF EXISTS sync_log_update ON %I', pair[1]);
        EXECUTE format('CREATE TRIGGER sync_log_update AFTER UPDATE ON %I REFERENCING NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wellpulse_sync_log(%L)', pair[1], pair[2]);
        EXECUTE format('DROP TRIGGER IF EXISTS sync_log_delete ON %I', pair[1]);
        EXECUTE format('CREATE TRIGGER sync_log_delete AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wellpulse_sync_log(%L)', pair[1], pair[2]);
        EXECUTE format('DROP TRIGGER IF EXISTS sync_version_guard ON %I', pair[1]);
        EXECUTE format('CREATE TRIGGER sync_version_guard BEFORE UPDATE ON %I'
                       ' FOR EACH ROW EXECUTE FUNCTION wellpulse_sync_version_guard()', pair[1]);
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------- sync bookkeeping

CREATE TABLE IF NOT EXISTS sync_devices (
    tenant_id     text NOT NULL REFERENCES tenants (id),
    id            text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_actor    text,
    last_sync_at  timestamptz,
    last_cursor   bigint NOT NULL DEFAULT 0,
    syncs         bigint NOT NULL DEFAULT 0,
    last_error    text,
    last_error_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

-- The answer to a chunk, kept so that a retry (the connection dropped after the commit) gets the
-- same answer and applies nothing again. key: the Idempotency-Key, an upload's chunk, or the body hash.
CREATE TABLE IF NOT EXISTS sync_receipts (
    tenant_id  text NOT NULL,
    key        text NOT NULL,
    device_id  text NOT NULL,
    body_hash  text NOT NULL,
    response   text NOT NULL,  -- the answer's JSON, as sent (kept as text: it is sent again, never queried)
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- A large upload in numbered chunks, each applied in its own transaction; after a drop the
-- device resumes at next_chunk.
CREATE TABLE IF NOT EXISTS sync_uploads (
    tenant_id       text NOT NULL REFERENCES tenants (id),
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    device_id       text NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'completed')),
    cursor          bigint NOT NULL DEFAULT 0,
    total_chunks    integer,
    next_chunk      integer NOT NULL DEFAULT 0,
    applied_changes bigint NOT NULL DEFAULT 0,
    conflicts       bigint NOT NULL DEFAULT 0,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (tenant_id, id)
);

-- Every conflict, settled automatically or waiting for review, with every version involved.
CREATE TABLE IF NOT EXISTS sync_conflicts (
    tenant_id    text NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    entity_type  text NOT NULL,
    record_id    uuid NOT NULL,
    strategy     text NOT NULL,
    status       text NOT NULL CHECK (status IN ('settled', 'pending')),
    outcome      text NOT NULL,
    base_version integer NOT NULL,
    server       jsonb NOT NULL,
    versions     jsonb NOT NULL,
    fields       jsonb NOT NULL DEFAULT '[]'::jsonb,
    result       jsonb,
    device_ids   text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    settled_at   timestamptz,
    settled_by   text,
    comment      text,
    PRIMARY KEY (tenant_id, id)
);
-- At most one conflict per record waits for review; later versions join it.
CREATE UNIQUE INDEX IF NOT EXISTS sync_conflicts_one_pending ON sync_conflicts (tenant_id, entity_type, record_id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS sync_conflicts_created ON sync_conflicts (tenant_id, created_at DESC);

-- A production record created on two devices for the same well and day is one record: the
-- second device's id is an alias of the first.
CREATE TABLE IF NOT EXISTS sync_record_aliases (
    tenant_id   text NOT NULL,
    entity_type text NOT NULL,
    alias_id    uuid NOT NULL,
    record_id   uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, entity_type, alias_id)
);

SELECT wellpulse_enable_rls(t)
FROM unnest(ARRAY['manual_readings', 'inspections', 'field_notes', 'attachments', 'field_events', 'sync_changes',
                  'sync_devices', 'sync_receipts', 'sync_uploads', 'sync_conflicts', 'sync_record_aliases']) AS t;
