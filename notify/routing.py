"""The notification policy tree: which channels hear of an alert, in which group, and when they must wait.

Like Alertmanager's routing tree. A tenant's policy is one document: a flat list of routes, each naming its
``parent`` (the one route without a parent is the root, which matches every alert), and the mute timings the
routes refer to by name. A route may name an escalation chain (``escalation_chain``, inherited like
``channels``): each alert it takes opens an escalation that `store.escalations` runs. An alert walks the tree
from the root: at each route it tries the children in order; the first that matches takes it, and so does each
later matching sibling while the ones before it say ``continue``. The deepest routes that match are where it
ends (the route itself when no child matches).

A route's ``channels``, ``group_by`` and intervals, when left out, are its parent's. Alerts of one route whose
``group_by`` fields agree form a group: its first message waits ``group_wait`` (so alerts that come together go out
together, as one message listing them), later alerts of the group wait until ``group_interval`` after the last
message, and while an alert it sent stays open (unacknowledged) the group reminds of it every ``repeat_interval``
(0: never). While one of the route's mute timings is active (a weekly window in the tenant's time zone) the group's
message is held until the window ends: a muted alert is late, never lost.

Pure: the storage of the document is `store.notification_policies`'s, the planning `store.notifications`'s.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["FIELDS", "WEEKDAYS", "AlertFacts", "Match", "MuteTiming", "PolicyError", "PolicyTree", "Route"]

# What a route may match on and group by; ``labels.<name>`` reads the equipment's metadata.
FIELDS = ("severity", "equipment_type", "equipment_id", "well_id", "rule_kind", "rule_id")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_ROUTES = 200


class PolicyError(ValueError):
    """A policy document that cannot be used; ``field`` is the path of the offending value (``routes[2].parent``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AlertFacts:
    """What routing knows of an alert event. ``well_ids``: the wells its equipment serves (a tank battery serves
    several; ``well_id`` matches any of them, and groups by the first)."""

    severity: str
    equipment_id: str
    equipment_type: str = "other"
    rule_id: str = ""
    rule_kind: str = ""
    well_ids: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    def values(self, name: str) -> tuple[str, ...]:
        """The values of a matcher field.

        >>> facts = AlertFacts("critical", "PJ-1", well_ids=("W-1", "W-2"), labels={"area": "north"})
        >>> facts.values("well_id"), facts.values("labels.area"), facts.values("labels.zone")
        (('W-1', 'W-2'), ('north',), ())
        """
        if name.startswith("labels."):
            value = self.labels.get(name[len("labels."):])
            return () if value is None else (value,)
        if name == "well_id":
            return self.well_ids
        return (str(getattr(self, name)),)


@dataclass(frozen=True)
class MuteTiming:
    """A weekly window: on ``weekdays`` (0 = Monday) from ``start`` to ``end`` (local time; ``end`` at or before
    ``start`` runs past midnight into the next day).

    >>> night = MuteTiming("nights", frozenset(range(7)), time(22), time(6))
    >>> utc = ZoneInfo("UTC")
    >>> night.active(datetime(2026, 1, 5, 23, 0, tzinfo=utc)), night.active(datetime(2026, 1, 5, 12, 0, tzinfo=utc))
    (True, False)
    >>> night.ends(datetime(2026, 1, 5, 23, 0, tzinfo=utc))
    datetime.datetime(2026, 1, 6, 6, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC'))
    """

    name: str
    weekdays: frozenset[int]
    start: time
    end: time

    def _window(self, local: datetime) -> tuple[datetime, datetime] | None:
        for back in (0, 1):  # a window that began today, or yesterday and runs past midnight
            day = (local - timedelta(days=back)).date()
            if day.weekday() not in self.weekdays:
                continue
            begins = datetime.combine(day, self.start, local.tzinfo)
            ends = datetime.combine(day + timedelta(days=1 if self.end <= self.start else 0), self.end, local.tzinfo)
            if begins <= local < ends:
                return begins, ends
        return None

    def active(self, local: datetime) -> bool:
        return self._window(local) is not None

    def ends(self, local: datetime) -> datetime | None:
        """When the window active at ``local`` ends (None when none is)."""
        window = self._window(local)
        return None if window is None else window[1]


@dataclass(frozen=True)
class Route:
    """One node of the tree, its settings already inherited from its parents."""

    name: str
    parent: str | None
    matchers: Mapping[str, tuple[str, ...]]
    channels: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool
    mute_timings: tuple[str, ...]
    escalation_chain: str | None = None

    def matches(self, facts: AlertFacts) -> bool:
        return all(set(facts.values(name)) & set(wanted) for name, wanted in self.matchers.items())


@dataclass(frozen=True)
class Match:
    """Where an alert ends: the route, its group's key, and the route's channels and timings."""

    route: Route
    group_key: str

    @property
    def channels(self) -> tuple[str, ...]:
        return self.route.channels


_DEFAULTS: dict[str, Any] = {"channels": (), "group_by": (), "group_wait": 30.0, "group_interval": 300.0,
                             "repeat_interval": 14400.0, "mute_timings": (), "escalation_chain": None}


class PolicyTree:
    """A validated policy document (`parse`), and where an alert goes in it (`route`).

    >>> tree = PolicyTree.parse({"routes": [
    ...     {"name": "root", "channels": ["all"], "group_by": ["well_id"], "group_wait": 10},
    ...     {"name": "pumps", "parent": "root", "matchers": {"equipment_type": ["pump_jack"]}, "continue": True,
    ...      "channels": ["pumps"]},
    ...     {"name": "critical", "parent": "root", "matchers": {"severity": ["critical"]}, "channels": ["pager"],
    ...      "group_wait": 0}]})
    >>> alert = AlertFacts("critical", "PJ-1", "pump_jack", well_ids=("W-1",))
    >>> [(m.route.name, m.group_key, m.channels, m.route.group_wait) for m in tree.route(alert)]
    [('pumps', 'well_id=W-1', ('pumps',), 10.0), ('critical', 'well_id=W-1', ('pager',), 0.0)]
    >>> [m.route.name for m in tree.route(AlertFacts("info", "C-1", "compressor"))]
    ['root']
    """

    def __init__(self, routes: Sequence[Route], mute_timings: Mapping[str, MuteTiming]) -> None:
        self.routes = tuple(routes)
        self.mute_timings = dict(mute_timings)
        self.children: dict[str | None, list[Route]] = {}
        for route in self.routes:
            self.children.setdefault(route.parent, []).append(route)

    @property
    def root(self) -> Route:
        return self.children[None][0]

    def route(self, facts: AlertFacts) -> list[Match]:
        return [Match(r, group_key(r.group_by, facts)) for r in self._walk(self.root, facts)]

    def _walk(self, node: Route, facts: AlertFacts) -> list[Route]:
        found: list[Route] = []
        for child in self.children.get(node.name, ()):
            if child.matches(facts):
                found += self._walk(child, facts)
                if not child.continue_:
                    break
        return found or [node]

    def channel_ids(self) -> set[str]:
        return {c for r in self.routes for c in r.channels}

    def chain_ids(self) -> set[str]:
        """The escalation chains the routes name (`store.escalations` runs one per alert a route takes)."""
        return {r.escalation_chain for r in self.routes if r.escalation_chain}

    def muted_until(self, timings: Iterable[str], at: datetime, zone: str) -> datetime | None:
        """When the active ones of the named mute timings end, read in ``zone`` (None: none is active; a name the
        tree no longer has is not)."""
        local = at.astimezone(ZoneInfo(zone))
        ends = [e for name in timings if name in self.mute_timings
                and (e := self.mute_timings[name].ends(local)) is not None]
        return max(ends) if ends else None

    @classmethod
    def parse(cls, doc: Mapping[str, Any]) -> "PolicyTree":
        """Validate a policy document; `PolicyError` names the first offending field."""
        timings = _parse_timings(doc.get("mute_timings") or [])
        raw = doc.get("routes")
        if not isinstance(raw, list) or not raw:
            raise PolicyError("routes", "a non-empty list of routes is required (one of them the root)")
        if len(raw) > MAX_ROUTES:
            raise PolicyError("routes", f"at most {MAX_ROUTES} routes")
        specs = {}
        for i, spec in enumerate(raw):
            name = _check_route(spec, f"routes[{i}]", timings)
            if name in specs:
                raise PolicyError(f"routes[{i}].name", f"{name!r} is used twice")
            specs[name] = (i, spec)
        _check_tree(specs)
        routes: dict[str, Route] = {}
        for name in _top_down(specs):
            i, spec = specs[name]
            parent = spec.get("parent")
            routes[name] = _route(name, spec, routes[parent] if parent else None)
        return cls([routes[name] for name in specs], timings)


def group_key(group_by: Iterable[str], facts: AlertFacts) -> str:
    """``field=value`` pairs of the route's ``group_by``, the same for every alert of one group.

    >>> group_key(["well_id", "severity"], AlertFacts("warning", "PJ-1", well_ids=("W-9",)))
    'well_id=W-9,severity=warning'
    """
    return ",".join(f"{name}={(facts.values(name) or ('',))[0]}" for name in group_by)


def _check_field(name: object, where: str) -> str:
    if not isinstance(name, str) or not (name in FIELDS or (
            name.startswith("labels.") and 0 < len(name) - 7 <= 64 and name[7:].replace("_", "a").isalnum())):
        raise PolicyError(where, f"unknown field {name!r}; one of {', '.join(FIELDS)} or labels.<name>")
    return name


def _check_route(spec: object, where: str, timings: Mapping[str, MuteTiming]) -> str:
    if not isinstance(spec, Mapping):
        raise PolicyError(where, "a route is an object")
    unknown = set(spec) - {"name", "parent", "matchers", "continue", *_DEFAULTS}
    if unknown:
        raise PolicyError(f"{where}.{sorted(unknown)[0]}", "unknown setting")
    name = spec.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise PolicyError(f"{where}.name", "a name of 1 to 100 characters is required")
    matchers = spec.get("matchers") or {}
    if not isinstance(matchers, Mapping):
        raise PolicyError(f"{where}.matchers", "an object of field: [values]")
    for key, values in matchers.items():
        _check_field(key, f"{where}.matchers.{key}")
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise PolicyError(f"{where}.matchers.{key}", "a non-empty list of strings")
    for i, key in enumerate(spec.get("group_by") or []):
        _check_field(key, f"{where}.group_by[{i}]")
    for key in ("group_wait", "group_interval", "repeat_interval"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                                  or not 0 <= value <= 7 * 86400):
            raise PolicyError(f"{where}.{key}", "seconds between 0 and 604800")
    for i, channel in enumerate(spec.get("channels") or []):
        if not isinstance(channel, str):
            raise PolicyError(f"{where}.channels[{i}]", "a channel id")
    for i, timing in enumerate(spec.get("mute_timings") or []):
        if timing not in timings:
            raise PolicyError(f"{where}.mute_timings[{i}]", f"no mute timing named {timing!r}")
    if not isinstance(spec.get("continue", False), bool):
        raise PolicyError(f"{where}.continue", "true or false")
    if spec.get("escalation_chain") is not None and not isinstance(spec["escalation_chain"], str):
        raise PolicyError(f"{where}.escalation_chain", "an escalation chain id")
    return name


def _check_tree(specs: Mapping[str, tuple[int, Mapping[str, Any]]]) -> None:
    roots = [name for name, (_, spec) in specs.items() if spec.get("parent") is None]
    if len(roots) != 1:
        raise PolicyError("routes", f"exactly one route without a parent (the root) is required, found {len(roots)}")
    if specs[roots[0]][1].get("matchers"):
        raise PolicyError(f"routes[{specs[roots[0]][0]}].matchers", "the root matches every alert")
    for name, (i, spec) in specs.items():
        parent, seen = spec.get("parent"), {name}
        if parent is not None and parent not in specs:
            raise PolicyError(f"routes[{i}].parent", f"no route named {parent!r}")
        while parent is not None:
            if parent in seen:
                raise PolicyError(f"routes[{i}].parent", f"a cycle: {name!r} is its own ancestor")
            seen.add(parent)
            parent = specs[parent][1].get("parent")


def _top_down(specs: Mapping[str, tuple[int, Mapping[str, Any]]]) -> list[str]:
    def depth(name: str) -> int:
        parent = specs[name][1].get("parent")
        return 0 if parent is None else 1 + depth(parent)
    return sorted(specs, key=depth)


def _route(name: str, spec: Mapping[str, Any], parent: Route | None) -> Route:
    def inherit(key: str, attr: str | None = None) -> Any:
        value = spec.get(key)
        if isinstance(value, str):
            return value
        if value is not None and value != []:
            return tuple(value) if isinstance(value, list) else float(value)
        return getattr(parent, attr or key) if parent is not None else _DEFAULTS[key]
    return Route(name=name, parent=spec.get("parent"),
                 matchers={k: tuple(v) for k, v in (spec.get("matchers") or {}).items()},
                 channels=inherit("channels"), group_by=inherit("group_by"), group_wait=inherit("group_wait"),
                 group_interval=inherit("group_interval"), repeat_interval=inherit("repeat_interval"),
                 continue_=bool(spec.get("continue", False)), mute_timings=inherit("mute_timings"),
                 escalation_chain=inherit("escalation_chain"))


def _parse_timings(raw: object) -> dict[str, MuteTiming]:
    if not isinstance(raw, list):
        raise PolicyError("mute_timings", "a list of mute timings")
    timings: dict[str, MuteTiming] = {}
    for i, spec in enumerate(raw):
        where = f"mute_timings[{i}]"
        if not isinstance(spec, Mapping):
            raise PolicyError(where, "a mute timing is an object")
        name = spec.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100 or name in timings:
            raise PolicyError(f"{where}.name", "a unique name of 1 to 100 characters is required")
        days = spec.get("weekdays") or list(WEEKDAYS)
        if not isinstance(days, list) or any(d not in WEEKDAYS for d in days):
            raise PolicyError(f"{where}.weekdays", f"a list of {', '.join(WEEKDAYS)}")
        start, end = (_clock(spec.get(key), f"{where}.{key}") for key in ("start", "end"))
        timings[name] = MuteTiming(name, frozenset(WEEKDAYS.index(d) for d in days), start, end)
    return timings


def _clock(value: object, where: str) -> time:
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise PolicyError(where, "a local time HH:MM") from None
