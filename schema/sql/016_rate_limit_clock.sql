-- The rate limit hit of 004 at a given time: `p_now` (epoch seconds) or, NULL, the database clock (what the
-- app passes). A test hands in the time of its own clock, so a window can pass without waiting for it.
CREATE OR REPLACE FUNCTION wellpulse_rate_limit_hit(p_keys text[], p_limits integer[], p_periods integer[],
                                                    p_now double precision)
RETURNS TABLE (idx integer, prev_count integer, cur_count integer, elapsed double precision,
               admitted boolean, consumed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    t    double precision := coalesce(p_now, extract(epoch FROM clock_timestamp()));
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

-- The three-argument form (004) stays, on the database clock, for a replica not yet upgraded.
CREATE OR REPLACE FUNCTION wellpulse_rate_limit_hit(p_keys text[], p_limits integer[], p_periods integer[])
RETURNS TABLE (idx integer, prev_count integer, cur_count integer, elapsed double precision,
               admitted boolean, consumed boolean)
LANGUAGE sql AS $$
    SELECT * FROM wellpulse_rate_limit_hit(p_keys, p_limits, p_periods, NULL::double precision)
$$;
