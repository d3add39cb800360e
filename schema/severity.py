"""The severities of an alert and their order, defined once: info < warning < critical.

The models (`models.events` re-exports these), the API's schemas, the store's SQL and the WebSocket filter all
read the order from here. Standard library only: the models import it on every Ray worker.

>>> SEVERITIES
('info', 'warning', 'critical')
>>> severity_rank("critical") > severity_rank("warning") > severity_rank("info")
True
>>> max_severity("warning", "critical")
'critical'

"""

from typing import Literal, get_args

__all__ = ["SEVERITIES", "SEVERITY_RANK", "Severity", "max_severity", "severity_rank"]

Severity = Literal["info", "warning", "critical"]  # in rising order
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    """Return the order of a severity: info 0 < warning 1 < critical 2.

    Raises `ValueError` for anything else.

    >>> [severity_rank(s) for s in SEVERITIES]
    [0, 1, 2]

    """
    try:
        return SEVERITY_RANK[severity]
    except KeyError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}") from None


def max_severity(a: Severity, b: Severity) -> Severity:
    """Return the higher of two severities.

    >>> max_severity("info", "warning")
    'warning'

    """
    return a if severity_rank(a) >= severity_rank(b) else b
