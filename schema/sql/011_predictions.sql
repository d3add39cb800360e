-- What the models think, and the failure models shared by equipment of one type.

-- One row per equipment, replaced by its equipment actor at each checkpoint (same cadence, one upsert per
-- checkpointed equipment), so the API answers from the database wherever the actors run. The JSON columns
-- hold what `models.EquipmentState.predictions()` says: per sensor its anomaly score, expected mean and
-- std and drift state; the failure model's labels and runtime; the drift events.
CREATE TABLE IF NOT EXISTS predictions (
    tenant_id           text NOT NULL,
    equipment_id        text NOT NULL,
    equipment_type      text NOT NULL,
    model_version       text NOT NULL,
    samples_seen        bigint NOT NULL DEFAULT 0,
    values_seen         bigint NOT NULL DEFAULT 0,
    last_learned_ts     timestamptz,
    warming_up          boolean NOT NULL DEFAULT true,
    -- what the anomaly rule read last (the highest score), and the equipment's two multivariate scores
    anomaly_score       double precision NOT NULL DEFAULT 0 CHECK (anomaly_score BETWEEN 0 AND 1),
    equipment_score     double precision NOT NULL DEFAULT 0 CHECK (equipment_score BETWEEN 0 AND 1),
    multivariate_score  double precision NOT NULL DEFAULT 0 CHECK (multivariate_score BETWEEN 0 AND 1),
    failure_probability double precision NOT NULL DEFAULT 0 CHECK (failure_probability BETWEEN 0 AND 1),
    horizon_seconds     double precision NOT NULL,
    sensors             jsonb NOT NULL DEFAULT '{}'::jsonb,
    failure             jsonb NOT NULL DEFAULT '{}'::jsonb,
    drift               jsonb NOT NULL DEFAULT '{}'::jsonb,
    state_bytes         integer NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, equipment_id)
);

-- The failure model shared by the equipment of one type in a tenant: a new equipment starts from it, and the
-- examples every equipment of the type labels (failures reported from the field, healthy periods) teach it.
-- `state` is a pickled models.FailurePredictor (written by the actors only); `samples_seen` counts the
-- labelled examples it learned.
CREATE TABLE IF NOT EXISTS type_models (
    tenant_id      text NOT NULL,
    equipment_type text NOT NULL
                   CHECK (equipment_type IN ('pump_jack', 'compressor', 'separator', 'tank_battery', 'meter', 'other')),
    model_version  text NOT NULL,
    state          bytea NOT NULL,
    samples_seen   bigint NOT NULL DEFAULT 0,
    failures_seen  bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, equipment_type)
);

SELECT wellpulse_enable_rls(t) FROM unnest(ARRAY['predictions', 'type_models']) AS t;
