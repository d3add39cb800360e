"""API bodies of the models: predictions per equipment, the model listing, resets and backtests."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schema.severity import Severity

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
MAX_BACKTEST_DAYS = 31
MAX_BACKTEST_RULES = 50


class SensorDrift(BaseModel):
    drifts: int = Field(description="Drifts detected on this sensor (each re-baselined its anomaly models).")
    last_drift_at: datetime | None = None
    rebaselining: bool = Field(description="Learning its new normal after a drift (its score is 0 meanwhile).")


class SensorPrediction(BaseModel):
    sensor: str
    anomaly_score: Probability = Field(description="Of the sensor's latest value, before it was learned.")
    expected_mean: float = Field(description="The sensor's normal: robust running mean ...")
    expected_std: float = Field(description="... and standard deviation.")
    warming_up: bool
    drift: SensorDrift


class AnomalyPrediction(BaseModel):
    score: Probability = Field(description="What the anomaly rule read last: the highest of the scores below.")
    equipment_score: Probability = Field(description="Calibrated on the equipment's own history of all sensors.")
    multivariate_score: Probability = Field(description="Half-space trees over the sensors together.")
    sensors: list[SensorPrediction]


class FailurePrediction(BaseModel):
    probability: Probability = Field(description="Of a failure within the horizon.")
    horizon_seconds: float
    horizon_days: float
    labels_seen: int = Field(description="Labelled examples learned (the type's shared model's included).")
    failures_seen: int = Field(description="Failures reported for this equipment.")
    last_failure_at: datetime | None = None
    last_maintenance_at: datetime | None = None
    runtime_days: float


class DriftState(BaseModel):
    enabled: bool
    rebaselining: list[str]
    events: dict[str, datetime] = Field(description="Per sensor, its last drift.")


class PredictionsPublic(BaseModel):
    """What the models think of one equipment, as of their last checkpoint (`updated_at`); all null and
    `warming_up` before its first checkpoint."""

    equipment_id: str
    equipment_type: str
    model_version: str | None = None
    samples_seen: int = 0
    values_seen: int = 0
    last_learned_at: datetime | None = None
    updated_at: datetime | None = None
    warming_up: bool = True
    anomaly: AnomalyPrediction | None = None
    failure: FailurePrediction | None = None
    drift: DriftState | None = None
    state_bytes: int | None = Field(None, description="Size of the checkpointed model.")


class ModelPublic(BaseModel):
    """A model of the tenant: one per equipment (`kind` equipment, `id` the equipment's), and the failure model
    shared by each equipment type (`kind` equipment_type, `id` `type:<type>`)."""

    id: str
    kind: Literal["equipment", "equipment_type"]
    equipment_id: str | None = None
    equipment_type: str | None = None
    model_version: str
    samples_seen: int = Field(description="Snapshots learned (equipment), labelled examples (equipment type).")
    last_learned_at: datetime | None = None
    size_bytes: int
    updated_at: datetime


class ModelResetAccepted(BaseModel):
    equipment_id: str
    checkpoint_deleted: bool = Field(description="Whether a saved model was dropped.")
    status: Literal["requested"] = "requested"


# ---------------------------------------------------------------- backtest

RuleIdStr = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class BacktestRule(BaseModel):
    """A rule in the registry's form (`kind` and its `params`, as `POST /v1/rules` takes them): it replaces the
    rule with the same id (a default or the tenant's) or is added."""

    model_config = ConfigDict(extra="forbid")

    id: RuleIdStr
    kind: Literal["threshold", "rate_of_change", "stale_data", "stuck_sensor", "anomaly", "failure_risk"]
    params: dict[str, Any] = Field(default_factory=dict)


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{
        "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "sensitivity": "high",
        "rules": [{"id": "tubing_psi_high", "kind": "threshold",
                   "params": {"sensor": "tubing_psi", "high": 1150, "for_seconds": 30, "severity": "critical"}}],
        "include_scores": True, "max_points": 200}]})

    start: AwareDatetime = Field(alias="from", description="Start of the stored range replayed (with a zone).")
    end: AwareDatetime = Field(
        alias="to", description=f"End (excluded); at most {MAX_BACKTEST_DAYS} days after `from`.")
    rules: list[BacktestRule] = Field(default_factory=list, max_length=MAX_BACKTEST_RULES)
    sensitivity: Literal["low", "medium", "high"] | Probability = Field(
        "medium", description="Of the default anomaly rule (and of anomaly rules that set none).")
    include_scores: bool = Field(False, description="Also answer the anomaly score series, downsampled.")
    max_points: Annotated[int, Field(ge=1, le=5_000)] = Field(500, description="Points of that series at most.")


class BacktestRuleCount(BaseModel):
    rule_id: str
    kind: str
    alerts: int = Field(description="Alerts it would have opened.")
    by_severity: dict[str, int]


class BacktestAlert(BaseModel):
    rule_id: str
    severity: Severity = Field(description="The highest it reached.")
    opened_at: datetime
    resolved_at: datetime | None = None
    message: str


class ScorePoint(BaseModel):
    ts: datetime = Field(description="First snapshot of the bucket.")
    anomaly_score: Probability = Field(description="Highest in the bucket.")
    alert: int = Field(description="1 if an alert (warning or above) was open at any snapshot of the bucket.")


class BacktestResult(BaseModel):
    equipment_id: str
    equipment_type: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    snapshots: int
    learned: int
    sensors: list[str]
    model_version: str
    sensitivity: str | float
    rules: list[BacktestRuleCount]
    alerts: list[BacktestAlert]
    alerts_truncated: bool = False
    drift_events: int
    scores: list[ScorePoint] | None = None
    verdicts: dict[str, Any] | None = Field(
        None, description="Agreement with the operators' verdicts on the alerts raised live in the range (null: none"
        " judged): per verdict how many were judged and how many the replay raised again (same rule, within"
        " `match_within_s`), with `precision` (real among the raised-again real and false alarms) and `recall`.")
