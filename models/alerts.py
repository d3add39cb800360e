"""Alert state machine: at most one open alert per rule, changes returned as `AlertChange` events.

Also the pure part of alarm management (ISA-18.2) that the store applies: what a rule's alert depends on
(`alarm_profile`: latched, needs the equipment running, a low-pressure alert, its sensors).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.events import AlertChange, ChangeKind, Severity, severity_rank

__all__ = ["CHATTER_COUNT", "CHATTER_SECONDS", "AlarmProfile", "AlertStateMachine", "alarm_profile",
]

CHATTER_COUNT = 3  # openings of one key ...
CHATTER_SECONDS = 60.0  # ... within this much reading time make it chatter (ISA-18.2's usual figure)
# Sensors whose low values mean "not running" rather than a fault when the equipment is stopped.
_RUNNING_SENSOR = re.compile(r"(current|flow|strokes|spm|rpm|speed)")
_PRESSURE_SENSOR = re.compile(r"(_psi$|pressure)")


class AlertStateMachine:
    """Open, update and resolve one equipment's alerts, one open alert per `rule_id`.

    `evaluate` returns an `AlertChange` when the alert changes and None otherwise:

    - opened: the rule is active and no alert is open for it;
    - updated: an alert is open and the severity changed, or a chattering alert's condition came back;
    - resolved: an alert is open and the rule is no longer active.

    Chattering is held open at the source: a key that opened (or came back) `chatter_count` times within
    `chatter_seconds` of reading time is not resolved when its condition clears. It stays open as one alert;
    each return of the condition is an "updated" change whose details carry ``chattering`` and the count of
    ``occurrences``, and it resolves once the condition has stayed clear for `chatter_seconds`.

    The machine does no IO: the caller persists and publishes the changes. It is deterministic: the same
    calls give the same changes (its clock is the `ts` it is given).

    Parameters
    ----------
    equipment_id
        Written into every `AlertChange`.
    chatter_count
        Openings within `chatter_seconds` that make a key chatter.
    chatter_seconds
        The chattering window, and how long a held key must stay clear before it resolves.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> sm = AlertStateMachine("PJ-0042")
    >>> ts = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    >>> sm.evaluate("tubing_psi_high", active=True, severity="warning", ts=ts, message="high").kind
    'opened'
    >>> sm.evaluate("tubing_psi_high", active=True, severity="warning", ts=ts, message="high") is None
    True
    >>> sm.evaluate("tubing_psi_high", active=True, severity="critical", ts=ts, message="higher").kind
    'updated'
    >>> sm.open_alerts()
    {'tubing_psi_high': 'critical'}
    >>> sm.evaluate("tubing_psi_high", active=False, severity="critical", ts=ts, message="ok").kind
    'resolved'
    >>> sm.open_alerts()
    {}

    A key that opens three times within a minute is held open with a count:

    >>> sm = AlertStateMachine("PJ-0042")
    >>> def step(s, active):
    ...     c = sm.evaluate("p_low", active=active, severity="warning", ts=ts + timedelta(seconds=s), message="p")
    ...     return None if c is None else (c.kind, c.details.get("occurrences"))
    >>> [step(s, a) for s, a in [(0, True), (5, False), (10, True), (15, False), (20, True), (25, False)]]
    [('opened', None), ('resolved', None), ('opened', None), ('resolved', None), ('opened', 1), None]
    >>> [step(s, a) for s, a in [(30, True), (35, False), (40, True), (45, False), (100, False), (106, False)]]
    [('updated', 2), None, ('updated', 3), None, None, ('resolved', 3)]

    """

    def __init__(self, equipment_id: str, chatter_count: int = CHATTER_COUNT,
                 chatter_seconds: float = CHATTER_SECONDS) -> None:
        self.equipment_id = equipment_id
        self.chatter_count = chatter_count
        self.chatter_seconds = chatter_seconds
        self._open: dict[str, Severity] = {}
        self._openings: dict[str, list[datetime]] = {}  # recent openings (and returns) per key
        self._held: dict[str, datetime] = {}  # chattering keys held open: since when their condition is clear
        self._occurrences: dict[str, int] = {}  # of the open alert, for chattering keys

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Machines pickled before chattering was held open load with its defaults."""
        self.__dict__.update(state)
        for name, value in (("chatter_count", CHATTER_COUNT), ("chatter_seconds", CHATTER_SECONDS),
                            ("_openings", {}), ("_held", {}), ("_occurrences", {})):
            self.__dict__.setdefault(name, value)

    def needs_change(self, rule_id: str, *, active: bool, severity: Severity) -> bool:
        """Whether `evaluate` with these arguments may return a change (cheap; builds nothing)."""
        current = self._open.get(rule_id)
        if current is None:
            return active
        if rule_id in self._held:
            return True  # comes back, or may have stayed clear long enough to resolve
        return not active or current != severity

    def _chattering(self, rule_id: str, ts: datetime) -> bool:
        recent = [t for t in self._openings.get(rule_id, ()) if (ts - t).total_seconds() < self.chatter_seconds]
        self._openings[rule_id] = recent
        return len(recent) >= self.chatter_count

    def evaluate(
        self,
        rule_id: str,
        *,
        active: bool,
        severity: Severity,
        ts: datetime,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> AlertChange | None:
        """Apply a rule's verdict; return the resulting change, or None when nothing changed."""
        severity_rank(severity)  # validates
        current = self._open.get(rule_id)
        details = dict(details or {})
        kind: ChangeKind
        if current is None:
            if not active:
                return None
            kind = "opened"
            self._open[rule_id] = severity
            self._openings.setdefault(rule_id, []).append(ts)
            if self._chattering(rule_id, ts):
                self._occurrences[rule_id] = 1
                details.update(chattering=True, occurrences=1)
        elif rule_id in self._held:
            if active:  # the condition came back: the same alert, one more occurrence
                del self._held[rule_id]
                self._openings.setdefault(rule_id, []).append(ts)
                n = self._occurrences[rule_id] = self._occurrences.get(rule_id, 1) + 1
                self._open[rule_id] = severity
                kind = "updated"
                details.update(chattering=True, occurrences=n)
                message = f"{message} (chattering: {n} occurrences)"
            elif (ts - self._held[rule_id]).total_seconds() >= self.chatter_seconds:
                kind = "resolved"
                n = self._occurrences.pop(rule_id, 1)
                del self._held[rule_id], self._open[rule_id]
                details.update(chattering=True, occurrences=n)
                message = f"{message} (quiet for {self.chatter_seconds:g}s after {n} occurrences)"
            else:
                return None
        elif not active:
            if rule_id in self._occurrences or self._chattering(rule_id, ts):
                self._held[rule_id] = ts  # chattering: held open until it stays clear
                self._occurrences.setdefault(rule_id, 1)
                return None
            kind = "resolved"
            del self._open[rule_id]
        elif current != severity:
            kind = "updated"
            self._open[rule_id] = severity
        else:
            return None
        return AlertChange(
            kind=kind,
            rule_id=rule_id,
            equipment_id=self.equipment_id,
            severity=severity,
            ts=ts,
            message=message,
            details=details,
        )

    def open_alerts(self) -> dict[str, Severity]:
        """Open alerts: rule_id to severity (a copy); chattering ones held open included."""
        return dict(self._open)

    def is_open(self, rule_id: str) -> bool:
        """Whether an alert is open for `rule_id`."""
        return rule_id in self._open

    def restore_open(self, rule_id: str, severity: Severity) -> None:
        """Mark an alert as open without emitting a change (used when loading open alerts from the DB)."""
        severity_rank(severity)
        self._open[rule_id] = severity

    def forget(self, rule_id: str) -> None:
        """Drop an open alert without emitting a change (no-op when none is open)."""
        self._open.pop(rule_id, None)
        self._held.pop(rule_id, None)
        self._occurrences.pop(rule_id, None)


@dataclass(frozen=True, slots=True)
class AlarmProfile:
    """What an alert depends on, for the store's alarm states.

    Parameters
    ----------
    latched
        Stays open until acknowledged even when its condition clears.
    requires_running
        Meaningful only while the equipment runs (a low flow, low current): suppressed while it is stopped
        or in maintenance.
    low_pressure
        A low-pressure alert: suppressed while an upstream compressor serving the same well is down.
    sensors
        The sensors the alert is about (out-of-service sensors suppress it; similar alerts share them).

    """

    latched: bool = False
    requires_running: bool = False
    low_pressure: bool = False
    sensors: tuple[str, ...] = ()


def alarm_profile(rule: Any, details: Mapping[str, Any]) -> AlarmProfile:
    """The profile of a change's alert, from its rule (None: a rule of the models, e.g. a drift) and details.

    A rule's own ``latched`` and ``requires_running`` options count; a threshold rule with only a low limit
    on a running sensor (current, flow, strokes, speed) needs the equipment running anyway, and one on a
    pressure sensor is a low-pressure alert.

    >>> from models.rules import ThresholdRule
    >>> alarm_profile(ThresholdRule("i_low", "motor_current_a", low=10.0), {})
    AlarmProfile(latched=False, requires_running=True, low_pressure=False, sensors=('motor_current_a',))
    >>> alarm_profile(ThresholdRule("t_low", "tubing_psi", low=300.0), {}).low_pressure
    True
    >>> alarm_profile(None, {"sensors": [{"sensor": "x"}, {"sensor": "y"}]}).sensors
    ('x', 'y')

    """
    sensor = getattr(rule, "sensor", None) or details.get("sensor")
    if isinstance(sensor, str):
        sensors: tuple[str, ...] = (sensor,)
    else:
        listed = details.get("sensors")
        sensors = tuple(sorted({str(e["sensor"]) for e in listed if isinstance(e, Mapping) and "sensor" in e})
                        ) if isinstance(listed, list) else ()
    low_only = getattr(rule, "low", None) is not None and getattr(rule, "high", None) is None
    name = sensors[0] if len(sensors) == 1 else ""
    return AlarmProfile(
        latched=bool(getattr(rule, "latched", False)),
        requires_running=bool(getattr(rule, "requires_running", False))
        or (low_only and bool(_RUNNING_SENSOR.search(name))),
        low_pressure=low_only and bool(_PRESSURE_SENSOR.search(name)),
        sensors=sensors,
    )
