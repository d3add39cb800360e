-- Identity and tenant isolation: users, sessions (refresh-token families), API keys,
-- one-time tokens (invitations, password resets), login throttling, the audit trail,
-- and row-level security on every tenant-owned table.
--
-- The app connects as a role without BYPASSRLS (the runner creates it and grants it
-- what it needs) and names its tenant per transaction:
--     SELECT set_config('wellpulse.tenant_id', $1, true)
-- With no tenant set, current_setting(..., true) is NULL and a policy matches no row.

CREATE TABLE IF NOT EXISTS users (
    tenant_id           text NOT NULL REFERENCES tenants (id),
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email               text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    name                text NOT NULL DEFAULT '',
    role                text NOT NULL CHECK (role IN ('admin', 'manager', 'operator', 'viewer')),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('invited', 'active', 'deactivated')),
    password_hash       text,
    mfa_secret          text,
    mfa_enabled         boolean NOT NULL DEFAULT false,
    mfa_last_step       bigint,
    invited_by          uuid,
    last_login_at       timestamptz,
    password_changed_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
-- One live account per address and tenant; a soft-deleted one frees the address.
CREATE UNIQUE INDEX IF NOT EXISTS users_tenant_email ON users (tenant_id, email) WHERE deleted_at IS NULL;

-- A session is one sign-in: the family of refresh tokens that rotate from it. Access
-- tokens carry its id (sid), so revoking the session stops them at once too.
CREATE TABLE IF NOT EXISTS auth_sessions (
    tenant_id      text NOT NULL REFERENCES tenants (id),
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    ip             text,
    user_agent     text,
    mfa_setup_only boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS auth_sessions_user ON auth_sessions (tenant_id, user_id);

CREATE TABLE IF NOT EXISTS refresh_tokens (
    tenant_id   text NOT NULL REFERENCES tenants (id),
    token_hash  bytea PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES auth_sessions (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE IF NOT EXISTS api_keys (
    tenant_id    text NOT NULL REFERENCES tenants (id),
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL,
    prefix       text NOT NULL,
    key_hash     bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL,
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id, created_at DESC);

-- Single-use tokens sent by message: invitations and password resets.
CREATE TABLE IF NOT EXISTS one_time_tokens (
    tenant_id  text NOT NULL REFERENCES tenants (id),
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id),
    purpose    text NOT NULL CHECK (purpose IN ('invitation', 'password_reset')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

-- Failed sign-ins per account and per address, keyed by a keyed hash (no email or IP
-- in clear). Not tenant data: an unknown email is throttled exactly like a known one.
CREATE UNLOGGED TABLE IF NOT EXISTS login_throttle (
    key          bytea PRIMARY KEY,
    failures     integer NOT NULL DEFAULT 0,
    last_failure timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz
);

-- Who changed what, when, from where. Append-only, enforced by the database itself.
CREATE TABLE IF NOT EXISTS audit_log (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor_type  text NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system', 'cli')),
    actor_id    text NOT NULL,
    action      text NOT NULL,
    entity_type text NOT NULL,
    entity_id   text,
    old_values  jsonb,
    new_values  jsonb,
    ip          text,
    request_id  text
);
CREATE INDEX IF NOT EXISTS audit_log_tenant_at ON audit_log (tenant_id, at DESC, id DESC);

CREATE OR REPLACE FUNCTION wellpulse_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION wellpulse_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION wellpulse_append_only();

-- Row-level security. One policy per table, the same predicate everywhere.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['equipment', 'alert_rules', 'alerts', 'alert_events', 'model_checkpoints',
                             'users', 'auth_sessions', 'refresh_tokens', 'api_keys', 'one_time_tokens',
                             'audit_log']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I'
                       ' USING (tenant_id = current_setting(''wellpulse.tenant_id'', true))'
                       ' WITH CHECK (tenant_id = current_setting(''wellpulse.tenant_id'', true))', t);
    END LOOP;
    -- TimescaleDB refuses row-level security on a compressed hypertable and continuous
    -- aggregates on a table with it (timescale/timescaledb#6827, #6832): there, readings
    -- are scoped by the application's own tenant filter only.
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        ALTER TABLE readings ENABLE ROW LEVEL SECURITY;
        DROP POLICY IF EXISTS tenant_isolation ON readings;
        CREATE POLICY tenant_isolation ON readings
            USING (tenant_id = current_setting('wellpulse.tenant_id', true))
            WITH CHECK (tenant_id = current_setting('wellpulse.tenant_id', true));
    END IF;
END;
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON tenants;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_setting('wellpulse.tenant_id', true))
    WITH CHECK (id = current_setting('wellpulse.tenant_id', true));

-- The few reads that must cross tenants, each narrow, owned by the migrating role.
CREATE OR REPLACE FUNCTION wellpulse_active_tenants() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT id FROM tenants WHERE active AND deleted_at IS NULL ORDER BY id
$$;

CREATE OR REPLACE FUNCTION wellpulse_open_alert_counts()
    RETURNS TABLE (tenant_id text, severity text, n bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT tenant_id, severity, count(*) FROM alerts WHERE state <> 'resolved' GROUP BY tenant_id, severity
$$;
