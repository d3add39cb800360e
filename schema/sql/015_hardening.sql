-- Security review (issue 20, item 1): a SECURITY DEFINER function runs as its owner (the migrating role,
-- often a superuser). PostgreSQL searches pg_temp first unless it is named, so with `search_path = public`
-- a temporary view named `tenants` made by the caller would run as the owner. Name pg_temp, last.
CREATE OR REPLACE FUNCTION wellpulse_active_tenants() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT id FROM public.tenants WHERE active AND deleted_at IS NULL ORDER BY id
$$;

CREATE OR REPLACE FUNCTION wellpulse_open_alert_counts()
    RETURNS TABLE (tenant_id text, severity text, n bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT a.tenant_id, a.severity, count(*) FROM public.alerts a WHERE a.state <> 'resolved'
    GROUP BY a.tenant_id, a.severity
$$;

-- Nobody gets to create objects in public by default (PostgreSQL 15 already does this; older ones do not).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
