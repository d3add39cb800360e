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
    FailureRiskRule,
    Observation,
    RateOfChangeRule,
    Rule,
    Sensitivity,
    StaleDataRule,
    StuckSensorRule,
    ThresholdRule,
    build_rule,
    default_rules,
    sensitivity_level,
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
    "EquipmentState",
    "FailurePredictor",
    "FailureRiskRule",
    "Observation",
    "RateOfChangeRule",
    "ReplayRow",
    "Rule",
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
    "sensitivity_level",
    "severity_rank",
]
