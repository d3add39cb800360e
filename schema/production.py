"""Daily production records of a well: request and response bodies, and the CSV columns.

One record per well and day (regulatory reporting). Volumes are never negative, a day has
at most 24 hours of runtime, and no record is for a day that has not started yet in the
tenant's time zone (checked by the service, which knows the zone).
"""

import csv
import io
from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schema.csvcells import restore

# The wells table's own rule (schema/sql/005_assets.sql).
WELL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
WellId = Annotated[str, StringConstraints(pattern=WELL_ID_PATTERN)]
Volume = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Runtime = Annotated[float, Field(ge=0, le=24, allow_inf_nan=False)]
Pressure = Annotated[float, Field(ge=-15, le=100_000, allow_inf_nan=False, description="psi (gauge)")]
Temperature = Annotated[float, Field(ge=-100, le=1_000, allow_inf_nan=False, description="degrees Fahrenheit")]
Notes = Annotated[str, StringConstraints(max_length=2000)]
Period = Literal["day", "week", "month"]
Source = Literal["api", "import", "sync"]

MAX_BATCH = 1000
MAX_IMPORT_LINES = 10_000
# The fields a record carries besides its identity, in CSV column order.
VALUE_FIELDS = ("oil_bbl", "gas_mcf", "water_bbl", "runtime_hours", "tubing_psi", "casing_psi", "line_psi",
                "temperature_f", "notes")
CSV_COLUMNS = ("well_id", "day", *VALUE_FIELDS)
EXPORT_COLUMNS = ("id", *CSV_COLUMNS, "source", "version", "created_by", "created_at", "updated_at")
# Columns an export carries that an import ignores, so an export can be imported again.
IGNORED_IMPORT_COLUMNS = frozenset(EXPORT_COLUMNS) - frozenset(CSV_COLUMNS)


class ProductionCreate(BaseModel):
    """A day of production. Volumes default to 0; the rest is optional."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "well_id": "W-0001", "day": "2026-11-20", "oil_bbl": 42.5, "gas_mcf": 130.0, "water_bbl": 88.0,
        "runtime_hours": 23.5, "tubing_psi": 180.0, "casing_psi": 95.0, "line_psi": 60.0, "temperature_f": 104.0}]})

    well_id: WellId
    day: date
    oil_bbl: Volume = 0.0
    gas_mcf: Volume = 0.0
    water_bbl: Volume = 0.0
    runtime_hours: Runtime | None = None
    tubing_psi: Pressure | None = None
    casing_psi: Pressure | None = None
    line_psi: Pressure | None = None
    temperature_f: Temperature | None = None
    notes: Notes | None = None


class ProductionUpdate(BaseModel):
    """A partial update. ``version``, when given, must be the record's current version (else 409)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"oil_bbl": 40.0, "version": 1}]})

    well_id: WellId | None = None
    day: date | None = None
    oil_bbl: Volume | None = None
    gas_mcf: Volume | None = None
    water_bbl: Volume | None = None
    runtime_hours: Runtime | None = None
    tubing_psi: Pressure | None = None
    casing_psi: Pressure | None = None
    line_psi: Pressure | None = None
    temperature_f: Temperature | None = None
    notes: Notes | None = None
    version: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None


# Fields that may be set to null by a PATCH; the others may only be left out.
NULLABLE_FIELDS = frozenset({"runtime_hours", "tubing_psi", "casing_psi", "line_psi", "temperature_f", "notes"})


class ProductionBatch(BaseModel):
    """All or nothing: one bad record and none is stored."""

    model_config = ConfigDict(extra="forbid")

    records: Annotated[list[ProductionCreate], Field(min_length=1, max_length=MAX_BATCH)]


class ProductionPublic(BaseModel):
    id: UUID
    well_id: str
    day: date
    oil_bbl: float
    gas_mcf: float
    water_bbl: float
    runtime_hours: float | None = None
    tubing_psi: float | None = None
    casing_psi: float | None = None
    line_psi: float | None = None
    temperature_f: float | None = None
    notes: str | None = None
    source: str
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime


class ProductionCreated(BaseModel):
    """What a batch or an import stored: the new records' ids, in input order."""

    count: int
    ids: list[UUID]


class ProductionSummary(BaseModel):
    """Sums per period (a day, an ISO week from Monday, a calendar month)."""

    period_start: date
    well_id: str | None = Field(None, description="the well asked for; null: the whole tenant")
    oil_bbl: float
    gas_mcf: float
    water_bbl: float
    avg_runtime_hours: float | None = Field(None, description="over the records that report a runtime")
    records: int
    wells: int


class CsvProblem(ValueError):
    """A CSV import that cannot be stored; each detail names ``line N.column``."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__(details[0]["message"] if details else "invalid CSV")
        self.details = details[:50]


def parse_production_csv(text: str, *, max_lines: int = MAX_IMPORT_LINES) -> list[tuple[int, ProductionCreate]]:
    r"""(line number, record) for each data row of a CSV with a header row of field names.

    ``well_id`` and ``day`` columns are required, the others optional; an empty cell means
    the field's default. Columns of an export that are not fields (``id``, ``version``...)
    are ignored. Every problem is collected, each naming its line and column.

    >>> rows = parse_production_csv("well_id,day,oil_bbl\nW-1,2026-01-02,4.5\n")
    >>> [(n, r.well_id, r.oil_bbl) for n, r in rows]
    [(2, 'W-1', 4.5)]
    >>> try:
    ...     parse_production_csv("well_id,day,oil_bbl\nW-1,2026-01-02,-1\n")
    ... except CsvProblem as exc:
    ...     print(exc.details[0]["field"])
    line 2.oil_bbl
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CsvProblem([{"field": "line 1", "message": "empty body: a header row of field names is required"}]) \
            from None
    except csv.Error as exc:
        raise CsvProblem([{"field": "line 1", "message": f"not CSV: {exc}"}]) from None
    problems: list[dict[str, str]] = []
    for name in header:
        if name not in CSV_COLUMNS and name not in IGNORED_IMPORT_COLUMNS:
            problems.append({"field": f"line 1.{name[:64]}", "message": f"line 1: unknown column {name[:64]!r};"
                             f" columns: {', '.join(CSV_COLUMNS)}"})
        elif header.count(name) > 1:
            problems.append({"field": f"line 1.{name}", "message": f"line 1: column {name!r} appears twice"})
    for required in ("well_id", "day"):
        if required not in header:
            problems.append({"field": f"line 1.{required}", "message": f"line 1: column {required!r} is required"})
    if problems:
        raise CsvProblem(problems)
    records: list[tuple[int, ProductionCreate]] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(records) >= max_lines:
                raise CsvProblem([{"field": f"line {line}",
                                   "message": f"more than {max_lines} records; split the file"}])
            if len(cells) != len(header):
                problems.append({"field": f"line {line}",
                                 "message": f"line {line}: {len(cells)} cells, the header has {len(header)}"})
                continue
            values = {k: restore(v.strip()) for k, v in zip(header, cells, strict=True)
                      if v.strip() and k not in IGNORED_IMPORT_COLUMNS}
            try:
                records.append((line, ProductionCreate.model_validate(values)))
            except ValidationError as exc:
                for err in exc.errors():
                    column = ".".join(str(p) for p in err.get("loc", ())) or "row"
                    problems.append({"field": f"line {line}.{column}",
                                     "message": f"line {line}, column {column}: {err.get('msg')}"})
            if len(problems) >= 50:
                break
    except csv.Error as exc:
        problems.append({"field": f"line {reader.line_num}", "message": f"line {reader.line_num}: not CSV: {exc}"})
    if problems:
        raise CsvProblem(problems)
    if not records:
        raise CsvProblem([{"field": "line 2", "message": "no records after the header row"}])
    return records
