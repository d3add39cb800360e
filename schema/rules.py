"""Alert rules in the API: one request body per kind (discriminated on ``kind``), so OpenAPI documents each.

The parameter models check types and ranges; the rule's own constructor (`models.rules.build_rule`,
what the actors run) checks the rest, such as ``low < high``. Defaults here are those of the rule
classes; a stored rule keeps only the parameters its author gave.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schema.alerts import NO_NUL, RuleId
from schema.equipment import EquipmentType
from schema.ids import EquipmentId, SensorName
from schema.severity import Severity

RULE_KINDS = ("threshold", "rate_of_change", "stale_data", "stuck_sensor", "anomaly", "failure_risk")
RuleKind = Literal["threshold", "rate_of_change", "stale_data", "stuck_sensor", "anomaly", "failure_risk"]
WEEK = 7 * 86_400.0
Number = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Params(BaseModel):
    """Every kind also takes the alarm options ``latched`` and ``requires_running``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    latched: bool = Field(False, description="The alert stays open until acknowledged even when the condition "
                          "clears (shown as cleared, awaiting acknowledgement); acknowledging it then resolves it.")
    requires_running: bool = Field(False, description="Meaningful only while the equipment runs (a low flow, a "
                                   "low current): suppressed while it is in maintenance, failed or decommissioned.")


class ThresholdParams(_Params):
    """Active when `sensor` stays above `high` (or below `low`) for `for_seconds` of reading time; clears
    once back inside by `hysteresis`."""

    sensor: SensorName
    high: Number | None = None
    low: Number | None = None
    hysteresis: Annotated[float, Field(ge=0.0)] = 0.0
    for_seconds: Annotated[float, Field(ge=0.0, le=WEEK)] = 0.0


class RateOfChangeParams(_Params):
    """Active when `sensor` changes faster than `max_rate` units per minute, measured against its value
    `window_seconds` earlier."""

    sensor: SensorName
    max_rate: Annotated[float, Field(gt=0.0, description="Units per minute.")]
    direction: Literal["rising", "falling", "both"] = "both"
    window_seconds: Annotated[float, Field(gt=0.0, le=86_400.0)] = 60.0
    hysteresis: Annotated[float, Field(ge=0.0)] = 0.0


class StaleDataParams(_Params):
    """Active when no reading has arrived for `max_silence_seconds`."""

    max_silence_seconds: Annotated[float, Field(ge=1.0, le=WEEK)] = 60.0


class StuckSensorParams(_Params):
    """Active when a sensor that has varied repeats the same value `min_repeats` times in a row."""

    min_repeats: Annotated[int, Field(ge=2, le=100_000)] = 30


class AnomalyParams(_Params):
    """Active when the anomaly score stays at or above `level` for `for_count` snapshots; critical at
    `critical_level`. Without `level`, `sensitivity` sets it (low 0.999, medium 0.99, high 0.9)."""

    level: Probability | None = None
    critical_level: Probability | None = None
    for_count: Annotated[int, Field(ge=1, le=10_000)] = 3
    sensitivity: Literal["low", "medium", "high"] | Probability = "medium"


class FailureRiskParams(_Params):
    """Active while the predicted probability of failure within the horizon is at least `level`."""

    level: Probability = 0.5
    hysteresis: Probability = 0.1


PARAMS_BY_KIND: dict[str, type[_Params]] = {
    "threshold": ThresholdParams, "rate_of_change": RateOfChangeParams, "stale_data": StaleDataParams,
    "stuck_sensor": StuckSensorParams, "anomaly": AnomalyParams, "failure_risk": FailureRiskParams,
}
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]


class _RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: RuleId | None = Field(None, description="Chosen by the caller, or generated. The id of a default rule "
                              "(e.g. `tubing_psi_high`, `stale_data`) replaces that default in the rule's scope.")
    name: Name | None = Field(None, description="Default: the id.")
    description: Description = ""
    severity: Severity = "warning"
    equipment_id: EquipmentId | None = Field(None, description="Scope: this equipment only.")
    equipment_type: EquipmentType | None = Field(None, description="Scope: every equipment of this type. With "
                                                 "neither, the rule applies to the whole tenant.")
    enabled: bool = True


class ThresholdRuleCreate(_RuleCreate):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "tubing_high", "kind": "threshold", "severity": "critical", "equipment_type": "pump_jack",
        "params": {"sensor": "tubing_psi", "high": 1100, "hysteresis": 20, "for_seconds": 30}}]})

    kind: Literal["threshold"]
    params: ThresholdParams


class RateOfChangeRuleCreate(_RuleCreate):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "kind": "rate_of_change", "equipment_id": "PJ-0042",
        "params": {"sensor": "casing_psi", "max_rate": 50, "direction": "rising", "window_seconds": 300}}]})

    kind: Literal["rate_of_change"]
    params: RateOfChangeParams


class StaleDataRuleCreate(_RuleCreate):
    kind: Literal["stale_data"]
    params: StaleDataParams = Field(default_factory=StaleDataParams)


class StuckSensorRuleCreate(_RuleCreate):
    kind: Literal["stuck_sensor"]
    params: StuckSensorParams = Field(default_factory=StuckSensorParams)


class AnomalyRuleCreate(_RuleCreate):
    kind: Literal["anomaly"]
    params: AnomalyParams = Field(default_factory=AnomalyParams)


class FailureRiskRuleCreate(_RuleCreate):
    kind: Literal["failure_risk"]
    params: FailureRiskParams = Field(default_factory=FailureRiskParams)


RuleCreate = Annotated[
    ThresholdRuleCreate | RateOfChangeRuleCreate | StaleDataRuleCreate | StuckSensorRuleCreate
    | AnomalyRuleCreate | FailureRiskRuleCreate,
    Field(discriminator="kind"),
]


class RuleUpdate(BaseModel):
    """A partial update. `params` are merged into the rule's own (a key set to null is removed, i.e. back to
    its default); the kind cannot change (create another rule). Setting `equipment_id` or `equipment_type`
    changes the scope (null both for the whole tenant)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"params": {"high": 1150}}]})

    name: Name | None = None
    description: Description | None = None
    severity: Severity | None = None
    equipment_id: EquipmentId | None = None
    equipment_type: EquipmentType | None = None
    enabled: bool | None = None
    params: dict[str, Any] | None = None


class RulePublic(BaseModel):
    id: str
    name: str
    description: str
    kind: RuleKind
    severity: Severity
    equipment_id: str | None = None
    equipment_type: str | None = None
    enabled: bool
    params: dict[str, Any] = Field(description="The parameters given for the kind (see the create bodies).")
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime
