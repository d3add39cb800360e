"""Pure streaming logic: detectors, rules, the alert state machine and the equipment entity.

No IO, no Ray, no asyncio; deterministic given a seed. Imports only the standard library, River and
`schema`.
"""

from models.alerts import AlertStateMachine
from models.detectors import EWStats, SensorAnomalyDetector, SnapshotAnomalyDetector
from models.equipment import MODEL_VERSION, EquipmentState
from models.events import SEVERITIES, AlertChange, Severity, Snapshot, max_severity, severity_rank
from models.rules import (
    AnomalyRule,
    Observation,
    Rule,
    StaleDataRule,
    StuckSensorRule,
    ThresholdRule,
    build_rule,
    default_rules,
)

__all__ = [
    "MODEL_VERSION",
    "SEVERITIES",
    "AlertChange",
    "AlertStateMachine",
    "AnomalyRule",
    "EWStats",
    "EquipmentState",
    "Observation",
    "Rule",
    "SensorAnomalyDetector",
    "Severity",
    "Snapshot",
    "SnapshotAnomalyDetector",
    "StaleDataRule",
    "StuckSensorRule",
    "ThresholdRule",
    "build_rule",
    "default_rules",
    "max_severity",
    "severity_rank",
]
