"""A user's notification preferences: which of their media hear of each severity, and quiet hours (pure, no IO).

A person is reached through up to three media: ``email`` (their account's address, through the tenant's email
channel), ``sms`` (the ``phone`` of their preferences, through the tenant's SMS channel) and ``in_app`` (their
inbox, `GET /v1/notifications`, and the WebSocket). Quiet hours are a daily window in the tenant's time zone
during which a non-critical notice reaches only the inbox: it is recorded, nobody's phone buzzes. Critical
alerts come through quiet hours.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time

from schema.severity import SEVERITIES

__all__ = ["DEFAULT_CHANNELS", "MEDIA", "Preferences"]

MEDIA = ("email", "sms", "in_app")
DEFAULT_CHANNELS: Mapping[str, tuple[str, ...]] = {
    "info": ("in_app",), "warning": ("in_app", "email"), "critical": ("in_app", "email", "sms")}
# What quiet hours leave: the inbox, which wakes nobody.
_SILENT = ("in_app",)


@dataclass(frozen=True)
class Preferences:
    """One user's settings; `media` answers which of their media an alert of a severity reaches at a time.

    >>> prefs = Preferences(channels={"warning": ("email", "in_app"), "critical": ("sms", "in_app")},
    ...                     quiet_start=time(22), quiet_end=time(6), phone="+15550100")
    >>> prefs.media("warning", datetime(2026, 1, 5, 12, 0)), prefs.media("warning", datetime(2026, 1, 5, 23, 0))
    (('email', 'in_app'), ('in_app',))
    >>> prefs.media("critical", datetime(2026, 1, 6, 3, 0))  # critical comes through quiet hours
    ('sms', 'in_app')
    >>> Preferences().media("critical", datetime(2026, 1, 6, 3, 0))  # no phone: no SMS
    ('in_app', 'email')
    """

    channels: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    quiet_start: time | None = None
    quiet_end: time | None = None
    phone: str | None = None

    def channels_for(self, severity: str) -> tuple[str, ...]:
        """The media chosen for ``severity`` (the default's when the user left it out)."""
        chosen = self.channels.get(severity)
        return tuple(DEFAULT_CHANNELS.get(severity, ()) if chosen is None else chosen)

    def quiet(self, local: datetime) -> bool:
        """Whether ``local`` (the tenant's wall clock) falls in the quiet hours; a window whose end is at or before
        its start runs past midnight.

        >>> Preferences(quiet_start=time(22), quiet_end=time(6)).quiet(datetime(2026, 1, 5, 5, 59))
        True
        >>> Preferences(quiet_start=time(1), quiet_end=time(5)).quiet(datetime(2026, 1, 5, 5, 0))
        False
        """
        if self.quiet_start is None or self.quiet_end is None:
            return False
        now = local.time().replace(tzinfo=None)
        if self.quiet_start < self.quiet_end:
            return self.quiet_start <= now < self.quiet_end
        return now >= self.quiet_start or now < self.quiet_end

    def media(self, severity: str, local: datetime) -> tuple[str, ...]:
        """Which media an alert of ``severity`` reaches at ``local``: the chosen ones, less SMS without a phone,
        less all but the inbox in quiet hours unless it is critical."""
        chosen = tuple(m for m in self.channels_for(severity) if m != "sms" or self.phone)
        if severity != SEVERITIES[-1] and self.quiet(local):
            return tuple(m for m in chosen if m in _SILENT)
        return chosen
