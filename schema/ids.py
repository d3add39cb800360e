"""Identifier rules.

Tenant, equipment and sensor ids end up inside NATS subjects and SQL, so they are
validated at every edge. None may contain ``.``, ``*``, ``>`` or whitespace: that is
what keeps one tenant's subjects apart from another's.
"""

import re
from typing import Annotated

from pydantic import StringConstraints

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
EQUIPMENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
SENSOR_PATTERN = r"^[a-z0-9_]{1,64}$"

TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
EquipmentId = Annotated[str, StringConstraints(pattern=EQUIPMENT_ID_PATTERN)]
SensorName = Annotated[str, StringConstraints(pattern=SENSOR_PATTERN)]

_TENANT_RE = re.compile(TENANT_ID_PATTERN)
_EQUIPMENT_RE = re.compile(EQUIPMENT_ID_PATTERN)
_SENSOR_RE = re.compile(SENSOR_PATTERN)


class InvalidIdentifier(ValueError):
    """An identifier that must not reach a subject or a query."""


def check_tenant_id(value: object) -> str:
    if not isinstance(value, str) or not _TENANT_RE.fullmatch(value):
        raise InvalidIdentifier(f"invalid tenant id {value!r}: expected {TENANT_ID_PATTERN}")
    return value


def check_equipment_id(value: object) -> str:
    if not isinstance(value, str) or not _EQUIPMENT_RE.fullmatch(value):
        raise InvalidIdentifier(f"invalid equipment id {value!r}: expected {EQUIPMENT_ID_PATTERN}")
    return value


def check_sensor(value: str) -> str:
    if not isinstance(value, str) or not _SENSOR_RE.fullmatch(value):
        raise InvalidIdentifier(f"invalid sensor name {value!r}: expected {SENSOR_PATTERN}")
    return value
