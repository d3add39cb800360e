-- Rate limits shared by every Serve replica (store/ratelimit.py). Counters are
-- throw-away state: UNLOGGED (no WAL, emptied after a crash, which merely forgives
-- the current window). Keys are opaque strings; no tenant data lives here.

-- The hot path: one row per limited key, the sliding window counter of the `limits`
-- library (current and previous fixed window, the previous one weighted by how much
-- of it still overlaps the sliding window). fillfactor leaves room for HOT updates.
CREATE UNLOGGED TABLE IF NOT EXISTS rate_limit_windows (
    key        text PRIMARY KEY,
    win        bigint NOT NULL,            -- index of the current window: floor(epoch / period)
    prev_count integer NOT NULL DEFAULT 0,
    cur_count  integer NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL        -- past this the row is dead (pruned lazily)
) WITH (fillfactor = 70);

-- Admit one request against several limits at once, all or nothing, in one round trip.
-- Uses the database clock, so replicas on different hosts agree on the windows.
-- Returns one row per input position: the window state after the call, and whether that
-- limit alone would admit the request; `consumed` is true when every limit admitted it
-- (and all counters were incremented).
CREATE OR REPLACE FUNCTION wellpulse_rate_limit_hit(p_keys text[], p_limits integer[], p_periods integer[])
RETURNS TABLE (idx integer, prev_count integer, cur_count integer, elapsed double precision,
               admitted boolean, consumed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    t    double precision := extract(epoch FROM clock_timestamp());
    n    integer := coalesce(cardinality(p_keys), 0);
    i    integer;
    w    bigint;
    row_ rate_limit_windows%ROWTYPE;
    wins bigint[] := array_fill(0::bigint, ARRAY[n]);
    prev integer[] := array_fill(0, ARRAY[n]);
    cur  integer[] := array_fill(0, ARRAY[n]);
    frac double precision[] := array_fill(0::double precision, ARRAY[n]);
    ok   boolean[] := array_fill(false, ARRAY[n]);
    all_ok boolean := true;
BEGIN
    -- Lock rows in key order: two requests sharing keys never deadlock.
    FOR i IN SELECT u.o FROM unnest(p_keys) WITH ORDINALITY AS u(k, o) ORDER BY u.k LOOP
        w := floor(t / p_periods[i])::bigint;
        wins[i] := w;
        frac[i] := t / p_periods[i] - w;
        SELECT * INTO row_ FROM rate_limit_windows c WHERE c.key = p_keys[i] FOR UPDATE;
        IF NOT FOUND THEN  -- a new key (or a pruned one); a concurrent insert of it is fine
            INSERT INTO rate_limit_windows AS c (key, win, expires_at)
            VALUES (p_keys[i], w, to_timestamp((w + 2) * p_periods[i]))
            ON CONFLICT (key) DO NOTHING;
            SELECT * INTO row_ FROM rate_limit_windows c WHERE c.key = p_keys[i] FOR UPDATE;
        END IF;
        IF row_.win = w THEN
            prev[i] := row_.prev_count; cur[i] := row_.cur_count;
        ELSIF row_.win = w - 1 THEN
            prev[i] := row_.cur_count; cur[i] := 0;
        ELSE
            prev[i] := 0; cur[i] := 0;
        END IF;
        ok[i] := floor(prev[i] * (1 - frac[i]) + cur[i]) + 1 <= p_limits[i];
        all_ok := all_ok AND ok[i];
    END LOOP;
    IF all_ok THEN
        FOR i IN 1 .. n LOOP
            cur[i] := cur[i] + 1;
            UPDATE rate_limit_windows c
               SET win = wins[i], prev_count = prev[i], cur_count = cur[i],
                   expires_at = to_timestamp((wins[i] + 2) * p_periods[i])
             WHERE c.key = p_keys[i];
        END LOOP;
    END IF;
    RETURN QUERY SELECT g, prev[g], cur[g], frac[g], ok[g], all_ok FROM generate_series(1, n) AS g;
END
$$;

-- Key/value counters with expiry: the storage behind limits' own strategies
-- (store.ratelimit.PostgresStorage), kept for comparison and for other callers.
CREATE UNLOGGED TABLE IF NOT EXISTS rate_limit_counters (
    key        text PRIMARY KEY,
    value      bigint NOT NULL,
    expires_at timestamptz NOT NULL
) WITH (fillfactor = 70);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wellpulse_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit_windows, rate_limit_counters TO wellpulse_app;
        GRANT EXECUTE ON FUNCTION wellpulse_rate_limit_hit(text[], integer[], integer[]) TO wellpulse_app;
    END IF;
END
$$;
