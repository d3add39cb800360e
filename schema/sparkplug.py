"""Sparkplug B topics (``spBv1.0/<group>/<type>/<node>[/<device>]``) and their NATS subjects: what the host
(gateway/sparkplug.py) and the edge-node simulator (sim/sparkplug.py) share. The payload is
``schema/sparkplug_b.proto``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BD_SEQ", "NAMESPACE", "REBIRTH", "SUBJECT_FILTER", "SUBJECT_NAMESPACE", "SparkplugError", "Topic",
           "parse_topic"]

NAMESPACE = "spBv1.0"
SUBJECT_NAMESPACE = "spBv1//0"  # NATS's MQTT listener writes a topic's "." as "//"
SUBJECT_FILTER = f"{SUBJECT_NAMESPACE}.>"
REBIRTH = "Node Control/Rebirth"
BD_SEQ = "bdSeq"
NODE_TYPES = frozenset({"NBIRTH", "NDEATH", "NDATA", "NCMD"})
DEVICE_TYPES = frozenset({"DBIRTH", "DDEATH", "DDATA", "DCMD"})


class SparkplugError(ValueError):
    """A message that cannot be used, with a short code for the counters."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


# ---------------------------------------------------------------- topics


@dataclass(frozen=True)
class Topic:
    group: str
    message_type: str
    node: str
    device: str | None = None

    @property
    def key(self) -> str:
        """``group/node/device`` (or ``group/node``): the counters' and the equipment map's key."""
        return "/".join(p for p in (self.group, self.node, self.device) if p)

    def mqtt(self) -> str:
        return "/".join(p for p in (NAMESPACE, self.group, self.message_type, self.node, self.device) if p)

    def subject(self) -> str:
        return ".".join(p for p in (SUBJECT_NAMESPACE, self.group, self.message_type, self.node, self.device) if p)


def parse_topic(topic: str) -> Topic:
    """A Sparkplug MQTT topic, or its NATS subject.

    >>> parse_topic("spBv1.0/east/DDATA/rtu-7/PJ-1")
    Topic(group='east', message_type='DDATA', node='rtu-7', device='PJ-1')
    >>> parse_topic("spBv1//0.east.NDEATH.rtu-7").key
    'east/rtu-7'
    """
    parts = topic.split(".") if topic.startswith(SUBJECT_NAMESPACE + ".") else topic.split("/")
    if parts[0] not in (NAMESPACE, SUBJECT_NAMESPACE) or len(parts) not in (4, 5):
        raise SparkplugError(f"not a Sparkplug B topic: {topic!r}", "bad_topic")
    _, group, message_type, node, *device = parts
    if message_type not in (NODE_TYPES if not device else DEVICE_TYPES):
        raise SparkplugError(f"unknown message type {message_type!r} in {topic!r}", "bad_topic")
    return Topic(group, message_type, node, device[0] if device else None)
