"""Alert state machine: at most one open alert per rule, changes returned as `AlertChange` events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models.events import AlertChange, Severity, severity_rank

__all__ = ["AlertStateMachine"]


class AlertStateMachine:
    """Open, update and resolve one equipment's alerts, one open alert per `rule_id`.

    `evaluate` returns an `AlertChange` when the alert changes and None otherwise:

    - opened: the rule is active and no alert is open for it;
    - updated: an alert is open and the severity changed;
    - resolved: an alert is open and the rule is no longer active.

    The machine does no IO: the caller persists and publishes the changes.

    Parameters
    ----------
    equipment_id
        Written into every `AlertChange`.

    Examples
    --------
    >>> from datetime import UTC, datetime
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

    """

    def __init__(self, equipment_id: str) -> None:
        self.equipment_id = equipment_id
        self._open: dict[str, Severity] = {}

    def needs_change(self, rule_id: str, *, active: bool, severity: Severity) -> bool:
        """Whether `evaluate` with these arguments would return a change (cheap; builds nothing)."""
        current = self._open.get(rule_id)
        if current is None:
            return active
        return not active or current != severity

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
        if current is None:
            if not active:
                return None
            kind = "opened"
            self._open[rule_id] = severity
        elif not active:
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
            details=dict(details or {}),
        )

    def open_alerts(self) -> dict[str, Severity]:
        """Open alerts: rule_id to severity (a copy)."""
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
