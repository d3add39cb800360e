"""Telemetry messages as SCADA feeds send them (NATS body or HTTP ingest body).

A message carries one snapshot of one equipment, or a list of them under ``readings``.

>>> msg = parse_telemetry(b'{"equipment_id": "PJ-1", "ts": "2026-11-22T06:00:00Z", "values": {"tubing_psi": 812}}')
>>> msg.readings[0].values
{'tubing_psi': 812.0}
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)

from schema.ids import EquipmentId, SensorName

DEFAULT_MAX_FUTURE_SKEW = timedelta(minutes=5)
DEFAULT_MAX_AGE = timedelta(days=365)  # the retention: an older reading would be dropped anyway
# Finite and bounded: a sum of many 1e308 values overflows a bucket's average to infinity.
MAX_ABS_VALUE = 1e15
MAX_READINGS_PER_MESSAGE = 10_000
MAX_SENSORS_PER_READING = 256


def _aware_and_not_future(ts: datetime, info: ValidationInfo) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("timestamp must carry a time zone (RFC 3339)")
    skew = (info.context or {}).get("max_future_skew", DEFAULT_MAX_FUTURE_SKEW)
    now = (info.context or {}).get("now") or datetime.now(UTC)
    if ts - now > skew:
        raise ValueError(f"timestamp is more than {skew.total_seconds():.0f}s in the future")
    max_age = (info.context or {}).get("max_age", DEFAULT_MAX_AGE)
    if now - ts > max_age:
        # On TimescaleDB one message of year-1 timestamps would create thousands of chunks.
        raise ValueError(f"timestamp is older than the retention ({max_age.days} days)")
    return ts.astimezone(UTC)


AwareTimestamp = Annotated[datetime, AfterValidator(_aware_and_not_future)]
SensorValue = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]


Quality = Literal["good", "uncertain", "bad"]
"""A value's quality as the source reports it (OPC UA status, Sparkplug quality, a gateway's own checks)."""


class Reading(BaseModel):
    """One snapshot of one equipment: several sensor values at one instant.

    ``quality`` names the sensors whose value is not ``good`` (a sensor left out is good); ``historical`` marks a
    snapshot forwarded late from an edge buffer or a Sparkplug ``is_historical`` metric.

    >>> r = Reading.model_validate({"equipment_id": "PJ-1", "ts": "2026-11-22T06:00:00Z",
    ...                             "values": {"a": 1, "b": 2}, "quality": {"b": "bad"}})
    >>> r.quality_of("a"), r.quality_of("b")
    ('good', 'bad')
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    equipment_id: EquipmentId
    ts: AwareTimestamp
    values: Annotated[dict[SensorName, SensorValue], Field(min_length=1, max_length=MAX_SENSORS_PER_READING)]
    quality: Annotated[dict[SensorName, Quality], Field(max_length=MAX_SENSORS_PER_READING)] = Field(
        default_factory=dict)
    historical: bool = False

    @model_validator(mode="after")
    def _quality_of_known_sensors(self) -> "Reading":
        unknown = sorted(set(self.quality) - set(self.values))
        if unknown:
            raise ValueError(f"quality names sensors without a value: {', '.join(unknown)}")
        return self

    def quality_of(self, sensor: str) -> Quality:
        return self.quality.get(sensor, "good")


class TelemetryBatch(BaseModel):
    """The ``{"readings": [...]}`` form."""

    model_config = ConfigDict(extra="forbid")

    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS_PER_MESSAGE)]

    @model_validator(mode="before")
    @classmethod
    def _single_snapshot(cls, data: object) -> object:
        if isinstance(data, dict) and "readings" not in data:
            return {"readings": [data]}
        return data


_BATCH = TypeAdapter(TelemetryBatch)


def parse_telemetry(
    body: bytes | str, *, max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW, max_age: timedelta = DEFAULT_MAX_AGE,
    now: datetime | None = None,
) -> TelemetryBatch:
    """Validate a raw message body; raises ``pydantic.ValidationError`` on bad input.

    Timestamps must fall in ``now - max_age .. now + max_future_skew``, values in ±`MAX_ABS_VALUE`.
    """
    return _BATCH.validate_json(body, context={"max_future_skew": max_future_skew, "max_age": max_age, "now": now})


def validation_reason(exc: Exception) -> str:
    """A short human reason for a rejected message, for the DLQ and the error envelope."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return "; ".join(parts)
    return str(exc)


# ---------------------------------------------------------------- API answers


class LatestValue(BaseModel):
    """The newest reading of one sensor."""

    sensor: str
    ts: datetime
    value: float


class EquipmentLatest(BaseModel):
    """The newest reading of each sensor of one equipment (an empty list: none stored yet)."""

    equipment_id: str
    sensors: list[LatestValue]
