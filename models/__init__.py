"""Pure streaming logic: detectors, drift, failure model, rules, the alert state machine and the equipment entity.

No IO, no Ray, no asyncio; deterministic given a seed. Imports only the standard library, River and
`schema`.
"""

from models.alerts import AlertStateMachine
from models.detectors import EquipmentAnomalyScorer, EWStats, SensorAnomalyDetector, SnapshotAnomalyDetector
from models.drift import SensorDriftDetector
from models.equipment import DRIFT_PREFIX, MODEL_VERSION, EquipmentState
from models.events import SEVERITIES, AlertChange, Severity, Snapshot, max_severity, severity_rank
from models.failure import DEFAULT_HORIZON_SECONDS, FailurePredictor
from models.replay import ReplayRow, replay
from models.rules import (
    RULE_KINDS,
    SENSITIVITIES,
    AnomalyRule,
    EquipmentRules,
    FailureRiskRule,
    Observation,
    RateOfChangeRule,
    RejectedRule,
    Rule,
    RuleSpec,
    Sensitivity,
    StaleDataRule,
    StuckSensorRule,
    ThresholdRule,
    build_rule,
    default_rules,
    rules_for_equipment,
    sensitivity_level,
    tenant_rules_for,
)

__all__ = [
    "DEFAULT_HORIZON_SECONDS",
    "DRIFT_PREFIX",
    "MODEL_VERSION",
    "RULE_KINDS",
    "SENSITIVITIES",
    "SEVERITIES",
    "AlertChange",
    "AlertStateMachine",
    "AnomalyRule",
    "EWStats",
    "EquipmentAnomalyScorer",
    "EquipmentRules",
    "EquipmentState",
    "FailurePredictor",
    "FailureRiskRule",
    "Observation",
    "RateOfChangeRule",
    "RejectedRule",
    "ReplayRow",
    "Rule",
    "RuleSpec",
    "Sensitivity",
    "SensorAnomalyDetector",
    "SensorDriftDetector",
    "Severity",
    "Snapshot",
    "SnapshotAnomalyDetector",
    "StaleDataRule",
    "StuckSensorRule",
    "ThresholdRule",
    "build_rule",
    "default_rules",
    "max_severity",
    "replay",
    "rules_for_equipment",
    "sensitivity_level",
    "severity_rank",
    "tenant_rules_for",
]
