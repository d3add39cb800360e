"""Request and response bodies of the asset registry: wells, equipment and its sensors, maintenance.

The US well API number is validated here as a pure function (:func:`parse_api_number`): the
database stores its digits, the API shows it with dashes (:func:`format_api_number`).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from schema.ids import EQUIPMENT_ID_PATTERN, SENSOR_PATTERN

__all__ = [
    "API_STATE_CODES", "ActivityPublic", "DueMaintenancePublic", "EquipmentCreate", "EquipmentPublic",
    "EquipmentStatus", "EquipmentTypeName", "EquipmentUpdate", "MaintenanceCreate", "MaintenanceKind",
    "MaintenancePublic", "MaintenanceUpdate", "SensorIn", "SensorList", "SensorPublic", "WellCreate", "WellPublic",
    "WellStatus", "WellUpdate", "format_api_number", "parse_api_number",
]

WellStatus = Literal["active", "inactive", "plugged_and_abandoned", "drilling"]
EquipmentTypeName = Literal["pump_jack", "compressor", "separator", "tank_battery", "meter", "other"]
EquipmentStatus = Literal["operational", "maintenance", "failed", "decommissioned"]
MaintenanceKind = Literal["preventive", "corrective", "inspection", "failure_repair"]
ActivityKind = Literal["maintenance", "alert", "production", "audit"]

# ---------------------------------------------------------------- the US well API number

# State codes of the API numbering standard (API Bulletin D12A, now kept by the PPDM
# Association): 01 Alabama .. 49 Wyoming in alphabetical order with 08 the District of
# Columbia, then 50 Alaska and 51 Hawaii (52-54 are reserved for future states); and the
# "pseudo-states" of federal offshore waters: 55 Alaska Offshore, 56 Pacific Coast Offshore,
# 60 Northern Gulf of Mexico, 61 Atlantic Coast Offshore.
API_STATE_CODES: frozenset[str] = frozenset({f"{n:02d}" for n in range(1, 52)} | {"55", "56", "60", "61"})
# state-county-unique well [-directional sidetrack [-event sequence]]; each dash optional.
_API_NUMBER = re.compile(r"^([0-9]{2})-?([0-9]{3})-?([0-9]{5})(?:-?([0-9]{2})(?:-?([0-9]{2}))?)?$")


def parse_api_number(text: str) -> str:
    """The digits of a US well API number (10, 12 or 14 of them), or ``ValueError`` saying why.

    Dashes are optional but, where given, sit between the parts: state (2 digits), county (3),
    unique well identifier (5), directional sidetrack (2), event sequence (2).

    >>> parse_api_number("42-501-20130-03-00")
    '42501201300300'
    >>> parse_api_number("4250120130")
    '4250120130'
    >>> parse_api_number("60-710-40062-01")
    '607104006201'
    >>> parse_api_number("52-001-00001")
    Traceback (most recent call last):
    ...
    ValueError: state code 52 is not an API state code (01-51, or offshore 55, 56, 60, 61)
    >>> parse_api_number("42-501-2013")
    Traceback (most recent call last):
    ...
    ValueError: expected 10, 12 or 14 digits as SS-CCC-UUUUU[-DD[-EE]], dashes optional
    """
    match = _API_NUMBER.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError("expected 10, 12 or 14 digits as SS-CCC-UUUUU[-DD[-EE]], dashes optional")
    state = match.group(1)
    if state not in API_STATE_CODES:
        raise ValueError(f"state code {state} is not an API state code (01-51, or offshore 55, 56, 60, 61)")
    return "".join(part for part in match.groups() if part)


def format_api_number(digits: str) -> str:
    """The stored digits with the standard dashes.

    >>> format_api_number("42501201300300")
    '42-501-20130-03-00'
    >>> format_api_number("4250120130")
    '42-501-20130'
    """
    parts = [digits[0:2], digits[2:5], digits[5:10], digits[10:12], digits[12:14]]
    return "-".join(p for p in parts if p)


# ---------------------------------------------------------------- shared field types


def _storable(value: str) -> str:
    # PostgreSQL text holds neither NUL nor lone surrogates; refusing them here keeps them a 422.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("must be JSON with finite numbers and valid Unicode text") from None
    if "\\u0000" in text or "\x00" in text:
        raise ValueError("must not contain NUL characters")
    if size > 16_384:
        raise ValueError("at most 16 KiB of JSON")
    return value


def _not_future(value: date | None) -> date | None:
    if value is not None and value > (datetime.now(UTC) + timedelta(days=1)).date():
        raise ValueError("must not be in the future")
    return value


def _sane_time(value: datetime) -> datetime:
    if not 1900 <= value.year <= 2200:
        raise ValueError("must be between the years 1900 and 2200")
    return value


ResourceId = Annotated[str, StringConstraints(pattern=EQUIPMENT_ID_PATTERN)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_storable)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_storable)]
LongText = Annotated[str, StringConstraints(max_length=4000), AfterValidator(_storable)]
Unit = Annotated[str, StringConstraints(strip_whitespace=True, max_length=32), AfterValidator(_storable)]
ApiNumber = Annotated[str, StringConstraints(max_length=40), AfterValidator(parse_api_number)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e15, le=1e15)]
PastDate = Annotated[date, AfterValidator(_not_future)]
Timestamp = Annotated[AwareDatetime, AfterValidator(_sane_time)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Patch(_Strict):
    """A partial update: absent fields stay as they are; ``null`` clears a field that may be empty."""

    NOT_NULL: ClassVar[tuple[str, ...]] = ()

    @field_validator("*", mode="before")
    @classmethod
    def _no_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.NOT_NULL:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the request gave, with their (validated) values."""
        return {name: getattr(self, name) for name in self.model_fields_set}


# ---------------------------------------------------------------- wells


class WellCreate(_Strict):
    """A well. ``id`` is the caller's (``^[A-Za-z0-9_-]{1,128}$``) or made by the server."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "W-UNIVERSITY-7", "api_number": "42-501-20130-03-00", "name": "University 7-12H",
        "lease": "University Lands 7", "operator": "Permian Example Co", "field": "Wasson", "status": "active",
        "latitude": 33.1234, "longitude": -102.5678, "spud_date": "2019-04-02", "metadata": {"pad": "P-12"},
    }]})

    id: ResourceId | None = None
    api_number: ApiNumber = Field(description="US well API number: 10, 12 or 14 digits, dashes optional")
    name: Name
    lease: ShortText | None = None
    operator: ShortText | None = None
    field: ShortText | None = None
    status: WellStatus = "active"
    latitude: Latitude | None = Field(None, description="WGS 84 degrees; give both latitude and longitude, or neither")
    longitude: Longitude | None = Field(None, validate_default=True, description="WGS 84 degrees")
    spud_date: PastDate | None = None
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("longitude")
    @classmethod
    def _both_or_neither(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "latitude" in info.data and (info.data["latitude"] is None) != (value is None):
            raise ValueError("latitude and longitude go together: give both or neither")
        return value


class WellUpdate(_Patch):
    """Fields to change; ``latitude`` and ``longitude`` must end up both set or both null."""

    NOT_NULL = ("api_number", "name", "status", "metadata")
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"status": "inactive", "lease": "University Lands 7B"}, {"latitude": 33.2, "longitude": -102.6}]})

    api_number: ApiNumber | None = None
    name: Name | None = None
    lease: ShortText | None = None
    operator: ShortText | None = None
    field: ShortText | None = None
    status: WellStatus | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    spud_date: PastDate | None = None
    metadata: Metadata | None = None


class WellPublic(BaseModel):
    id: str
    api_number: str = Field(description="formatted with dashes, e.g. 42-501-20130-03-00")
    name: str
    lease: str | None
    operator: str | None
    field: str | None
    status: WellStatus
    latitude: float | None
    longitude: float | None
    spud_date: date | None
    metadata: dict[str, Any]
    equipment_ids: list[str] = Field(description="live equipment assigned to the well")
    created_at: datetime
    updated_at: datetime


class ActivityPublic(BaseModel):
    """One entry of a well's timeline."""

    id: str = Field(description="<kind>:<id of the source record>")
    kind: ActivityKind
    at: datetime
    equipment_id: str | None
    summary: str
    details: dict[str, Any]


# ---------------------------------------------------------------- equipment and sensors


class SensorIn(_Strict):
    """One sensor an equipment reports: its unit, valid range and how often a value is expected."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "tubing_psi", "unit": "psi", "min_value": 0, "max_value": 5000, "expected_interval_seconds": 60}]})

    name: Annotated[str, StringConstraints(pattern=SENSOR_PATTERN)]
    unit: Unit = ""
    min_value: Finite | None = None
    max_value: Finite | None = None
    expected_interval_seconds: Annotated[int, Field(ge=1, le=86400 * 7)] | None = None

    @field_validator("max_value")
    @classmethod
    def _range(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min_value")
        if value is not None and low is not None and not low < value:
            raise ValueError("must be greater than min_value")
        return value


def _unique_sensors(sensors: list[SensorIn] | None) -> list[SensorIn] | None:
    names = [s.name for s in sensors or ()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"sensor names must be unique; repeated: {', '.join(twice)}")
    return sensors


def _unique_ids(ids: list[str] | None) -> list[str] | None:
    return list(dict.fromkeys(ids)) if ids is not None else None


SensorListIn = Annotated[list[SensorIn], Field(max_length=200), AfterValidator(_unique_sensors)]
WellIds = Annotated[list[ResourceId], Field(max_length=100), AfterValidator(_unique_ids)]


class SensorList(_Strict):
    """The whole sensor list of an equipment (PUT replaces it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"sensors": [
        {"name": "tubing_psi", "unit": "psi", "min_value": 0, "max_value": 5000, "expected_interval_seconds": 60},
        {"name": "motor_current_a", "unit": "A", "min_value": 0, "max_value": 120}]}]})

    sensors: SensorListIn


class SensorPublic(BaseModel):
    name: str
    unit: str
    min_value: float | None
    max_value: float | None
    expected_interval_seconds: int | None
    created_at: datetime
    updated_at: datetime


AnomalySensitivity = Annotated[Literal["low", "medium", "high"], Field(description=(
    "Sensitivity of the equipment's default anomaly rule (high: more alerts); null: the tenant's choice for"
    " the equipment type, else the tenant's default (tenant settings), else medium."))]


class EquipmentCreate(_Strict):
    """An equipment. ``id`` is what its feed reports (``^[A-Za-z0-9_-]{1,128}$``), or made by the server;
    ``name`` defaults to the id."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "PJ-0042", "name": "Pump jack 42", "type": "pump_jack", "status": "operational",
        "serial": "LF-320-88812", "manufacturer": "Lufkin", "install_date": "2021-06-15",
        "maintenance_interval_days": 90, "well_ids": ["W-UNIVERSITY-7"],
        "sensors": [{"name": "tubing_psi", "unit": "psi", "min_value": 0, "max_value": 5000,
                     "expected_interval_seconds": 60}],
    }]})

    id: ResourceId | None = None
    name: ShortText | None = None
    type: EquipmentTypeName = "other"
    status: EquipmentStatus = "operational"
    serial: ShortText | None = None
    manufacturer: ShortText | None = None
    install_date: date | None = None
    maintenance_interval_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    anomaly_sensitivity: AnomalySensitivity | None = None
    well_ids: WellIds = Field(default_factory=list, description="wells this equipment serves (a battery: several)")
    sensors: SensorListIn = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


class EquipmentUpdate(_Patch):
    """Fields to change; ``well_ids`` and ``sensors``, when given, replace the lists."""

    NOT_NULL = ("name", "type", "status", "well_ids", "sensors", "metadata")
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"status": "failed"}, {"well_ids": ["W-1", "W-2"], "maintenance_interval_days": 60}]})

    name: ShortText | None = None
    type: EquipmentTypeName | None = None
    status: EquipmentStatus | None = None
    serial: ShortText | None = None
    manufacturer: ShortText | None = None
    install_date: date | None = None
    maintenance_interval_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    anomaly_sensitivity: AnomalySensitivity | None = None
    well_ids: WellIds | None = None
    sensors: SensorListIn | None = None
    metadata: Metadata | None = None


class EquipmentPublic(BaseModel):
    id: str
    name: str
    type: EquipmentTypeName
    status: EquipmentStatus
    serial: str | None
    manufacturer: str | None
    install_date: date | None
    maintenance_interval_days: int | None
    anomaly_sensitivity: AnomalySensitivity | None
    well_ids: list[str]
    sensors: list[SensorPublic]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------- maintenance


class MaintenanceCreate(_Strict):
    """A maintenance job. Without ``ended_at`` it is in progress (the equipment's alerts are silenced)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "corrective", "description": "Replace stuffing box packing", "performed_by": "Crew 3"},
        {"kind": "inspection", "started_at": "2026-03-02T14:00:00Z", "ended_at": "2026-03-02T15:30:00Z"}]})

    kind: MaintenanceKind = "preventive"
    description: LongText = ""
    started_at: Timestamp | None = Field(None, description="default: now")
    ended_at: Timestamp | None = Field(None, description="omit while the job is in progress")
    performed_by: ShortText | None = None


class MaintenanceUpdate(_Patch):
    """Finish a job (``ended_at``) or edit it. ``version``, when given, must be the current one (409 if not)."""

    NOT_NULL = ("kind", "description", "started_at", "version")
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"ended_at": "2026-03-02T17:45:00Z"}, {"description": "Packing and polished rod replaced", "version": 2}]})

    kind: MaintenanceKind | None = None
    description: LongText | None = None
    started_at: Timestamp | None = None
    ended_at: Timestamp | None = Field(None, description="null reopens the job")
    performed_by: ShortText | None = None
    version: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None


class MaintenancePublic(BaseModel):
    id: UUID
    equipment_id: str
    kind: MaintenanceKind
    description: str
    started_at: datetime
    ended_at: datetime | None
    performed_by: str | None
    created_by: str
    source: str
    version: int
    active: bool = Field(description="started and not ended: the equipment's alerts are silenced")
    created_at: datetime
    updated_at: datetime


class DueMaintenancePublic(BaseModel):
    """An equipment whose next preventive maintenance is due (or overdue)."""

    id: str = Field(description="the equipment id")
    name: str
    type: EquipmentTypeName
    status: EquipmentStatus
    maintenance_interval_days: int
    install_date: date | None
    last_maintenance_at: datetime | None = Field(description="end of the last finished maintenance")
    due_at: datetime
    overdue: bool
    days_until_due: float = Field(description="negative when overdue")
