"""Request and response bodies of the REST API (envelope of DESIGN.md section 7)."""

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schema.alerts import Alert
from schema.telemetry import Quality

T = TypeVar("T")


class Pagination(BaseModel):
    page: int | None = None
    limit: int
    total: int | None = None
    next_cursor: str | None = None


class Meta(BaseModel):
    pagination: Pagination | None = None


class Envelope(BaseModel, Generic[T]):
    data: T
    meta: Meta = Field(default_factory=Meta)


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class IngestAccepted(BaseModel):
    messages: int
    readings: int
    equipment: list[str]
    idempotent_replay: bool = False


class RawReading(BaseModel):
    sensor: str
    ts: datetime
    value: float


class RawReadingWithQuality(RawReading):
    """A raw reading with its value's quality and whether it was forwarded late (``?include_quality=true``)."""

    quality: Quality
    historical: bool = Field(description="forwarded late (an edge buffer's backlog, a Sparkplug is_historical "
                                         "metric): learned, but no alert opened on it")


class BucketedReading(BaseModel):
    sensor: str
    bucket: datetime
    avg: float
    min: float
    max: float
    last: float
    count: int


class AcknowledgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(None, max_length=2000)


class AlertPublic(Alert):
    pass


class HealthReport(BaseModel):
    status: str
    storage: str
    checks: dict[str, Any]
    warnings: list[str] = Field(default_factory=list, description="healthy now, but heading for trouble "
                                "(e.g. a stream past 80 % of its disk limit)")
