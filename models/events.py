"""Value objects exchanged between `models` and the actors: snapshots in, alert changes out (and, from
`schema.severity`, the severities of the changes and their order).

Examples
--------
>>> from datetime import UTC, datetime
>>> snap = Snapshot(ts=datetime(2026, 11, 22, 6, 0, tzinfo=UTC), values={"tubing_psi": 812.0})
>>> snap.values["tubing_psi"]
812.0
>>> severity_rank("critical") > severity_rank("warning") > severity_rank("info")
True
>>> max_severity("warning", "critical")
'critical'

"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# The severities and their order are the schema's (the API and the store read them there too).
from schema.severity import SEVERITIES, Severity, max_severity, severity_rank

__all__ = ["SEVERITIES", "AlertChange", "ChangeKind", "Severity", "Snapshot", "max_severity", "severity_rank"]

ChangeKind = Literal["opened", "updated", "resolved"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One equipment's sensor values at one instant.

    Parameters
    ----------
    ts
        Reading time, timezone-aware UTC (a naive time is taken as UTC by the models).
    values
        Sensor name to value. Missing sensors, NaN and inf are allowed: the models skip them.
    historical
        Forwarded late from an edge buffer (a Sparkplug ``is_historical`` metric): learned, but no alert opens,
        updates or resolves on it (`models.equipment.EquipmentState.learn_many`).

    """

    ts: datetime
    values: Mapping[str, float] = field(default_factory=dict)
    historical: bool = False


@dataclass(frozen=True, slots=True)
class AlertChange:
    """A change of one alert: a domain event that the actors persist and publish.

    Parameters
    ----------
    kind
        "opened", "updated" (severity changed while open) or "resolved".
    rule_id
        Dedup key within one equipment: at most one open alert per `(equipment_id, rule_id)`.
    equipment_id
        The equipment the alert is about.
    severity
        Severity at the time of the change.
    ts
        The reading time (or tick time) that caused the change.
    message
        Human text, e.g. ``"tubing_psi 1450.0 above 1000.0 for 30s"``.
    details
        JSON-safe values only (str, float, int, bool, None, list, dict).

    """

    kind: ChangeKind
    rule_id: str
    equipment_id: str
    severity: Severity
    ts: datetime
    message: str
    details: dict[str, Any] = field(default_factory=dict)
