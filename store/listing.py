"""List endpoints: one parser for ``?page&limit&sort&fields&<field>=<op>:<value>`` and one SQL builder.

Every list endpoint describes its resource once with a :class:`ResourceSpec` (the public field
names, the SQL that reads each one, its type) and gets pagination, filters, sorting and
sparse fields from this module (DESIGN.md section 7). No FastAPI here; ``serve.listing``
turns :class:`ListQueryError` into the 422 envelope.

Query syntax
------------
``?page=2&limit=50``
    ``page`` >= 1, ``limit`` 1..100 (default 20); ``(page - 1) * limit`` may not pass
    :data:`MAX_OFFSET` (narrow the filters instead of paging that deep).
``?status=in:active,drilling&created_at=gte:2025-01-01&name=like:pump*``
    ``<field>=<op>:<value>``; without an operator the filter is ``eq``. Operators are
    ``eq gt gte lt lte in like``; which ones a field takes depends on its type (ordering
    operators on numbers, timestamps and dates; ``like`` on text only). ``in:`` takes a
    comma list (values cannot contain commas). A field may be filtered several times
    (``?created_at=gte:2025-01-01&created_at=lt:2025-02-01``); the filters are ANDed.
    A value whose text before the first colon looks like a word (``urn:x``) is read as an
    operator, so write ``eq:urn:x`` for such values. Values are trimmed of surrounding
    whitespace.
``like``
    ``*`` is the only wildcard (any run of characters, possibly empty); every other
    character is literal, ``%``, ``_`` and ``\\`` included. Matching is case-insensitive
    (``ILIKE``) and covers the whole value, so ``like:pump*`` is "starts with pump" and
    ``like:*pump*`` is "contains pump".
timestamps
    ISO 8601 with a zone (``2025-01-01T06:00:00Z``, ``...+02:00``), or a bare date
    ``2025-01-01`` meaning that whole UTC day: ``eq:2025-01-01`` is the day,
    ``lte:2025-01-31`` includes the 31st, ``gt:2025-01-31`` starts on February 1st.
    A time without a zone is refused (it would mean the server's zone).
``?sort=-created_at,name``
    ``-`` for descending. The spec's id field is appended as a tiebreak, so pages never
    overlap or skip rows when sort values repeat.
``?fields=id,name``
    The fields to return; the id field is always included.

Example
-------
>>> spec = ResourceSpec(
...     name="wells", from_sql="wells", default_sort="-created_at",
...     fields=(FieldSpec("id", "id"), FieldSpec("name", "name"),
...             FieldSpec("status", "status", "enum", enum=("active", "drilling")),
...             FieldSpec("created_at", "created_at", "timestamp")),
...     deleted_column="deleted_at")
>>> q = parse_list_query(spec, {"status": ["in:active,drilling"], "sort": ["name"], "fields": ["name"]})
>>> q.fields, q.sort, q.filters[0].value
(('id', 'name'), (SortKey(field='name', descending=False),), ('active', 'drilling'))
>>> sql = build_list_sql(spec, q, "acme")
>>> print(sql.select_sql.replace(" WHERE", "\\nWHERE").replace(" ORDER", "\\nORDER"))
SELECT (id) AS "id", (name) AS "name" FROM wells
WHERE tenant_id = $1 AND deleted_at IS NULL AND (status) = ANY($2)
ORDER BY (name) ASC, (id) ASC LIMIT $3 OFFSET $4
>>> sql.args
['acme', ['active', 'drilling'], 20, 0]
"""

from __future__ import annotations

import csv
import io
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, NamedTuple

import asyncpg

__all__ = [
    "DEFAULT_LIMIT", "MAX_LIMIT", "MAX_OFFSET", "OPERATORS", "PAGINATION_PARAMS", "FieldSpec", "FieldType", "Filter",
    "ListQuery", "ListQueryError", "ListSql", "Op", "ResourceSpec", "SortKey", "build_list_sql", "fetch_page",
    "parse_list_query",
]

FieldType = Literal["text", "int", "float", "bool", "timestamp", "date", "enum", "uuid"]
Op = Literal["eq", "gt", "gte", "lt", "lte", "in", "like"]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 100_000
MAX_FILTERS = 20
MAX_IN_VALUES = 100
MAX_VALUE_LENGTH = 500
PAGINATION_PARAMS = frozenset({"page", "limit", "sort", "fields"})

_ORDERED = ("eq", "gt", "gte", "lt", "lte", "in")
# The operators each type takes, in the order error messages and docs list them.
OPERATORS: dict[str, tuple[str, ...]] = {
    "text": ("eq", "in", "like"), "enum": ("eq", "in"), "uuid": ("eq", "in"), "bool": ("eq",),
    "int": _ORDERED, "float": _ORDERED, "timestamp": _ORDERED, "date": _ORDERED,
}
_ALL_OPS = frozenset(("like", *_ORDERED))
_SQL_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# Casts make the parameter's type ours rather than inferred: an int4 column compared with
# 2**40 stays a comparison instead of an encoder overflow. Text and enum get none, so that
# PostgreSQL enum columns keep working.
_CASTS = {"int": "::bigint", "float": "::float8", "bool": "::boolean", "timestamp": "::timestamptz",
          "date": "::date", "uuid": "::uuid"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_OP_PREFIX = re.compile(r"^([A-Za-z_]+):")
_INT = re.compile(r"^[+-]?\d{1,19}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
# An unencoded "+02:00" arrives as " 02:00" (a query string's + is a space): put it back.
_LOST_PLUS = re.compile(r"^(\S+[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")
_PLACEHOLDER = re.compile(r"\$(\d+)")


# ---------------------------------------------------------------- specs


@dataclass(frozen=True)
class FieldSpec:
    """One public field of a resource.

    ``column`` is SQL written by us (a column or an expression such as ``e.name`` or
    ``lower(email)``), never user text. ``name`` is the public name in query strings and
    responses. ``normalize``, when set, rewrites a filter's value text (after the operator,
    before it is split and parsed) into the form the column stores, e.g. dropping the dashes
    of a formatted number; it must keep ``*`` and ``,``, and a ``ValueError`` it raises is a
    422 naming the field.
    """

    name: str
    column: str
    type: FieldType = "text"
    enum: tuple[str, ...] = ()
    filterable: bool = True
    sortable: bool = True
    normalize: Callable[[str], str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ResourceSpec:
    """A listable resource: where its rows come from and which fields it exposes.

    ``from_sql`` is a FROM clause written by us (a table, or joins). ``tenant_column`` is
    filtered first in every query. ``id_field`` names a field unique within a tenant: it
    is always returned and is the sort tiebreak. Rows whose ``deleted_column`` is set are
    left out unless ``include_deleted`` is asked for. ``default_sort`` uses the ``sort``
    syntax (``"-created_at"``).
    """

    name: str
    from_sql: str
    fields: tuple[FieldSpec, ...]
    default_sort: str = "id"
    id_field: str = "id"
    tenant_column: str = "tenant_id"
    deleted_column: str | None = None
    by_name: Mapping[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        problems = [f"duplicate field {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
        for f in self.fields:
            if not _NAME.match(f.name) or f.name in PAGINATION_PARAMS:
                problems.append(f"bad field name {f.name!r}")
            if f.type not in OPERATORS:
                problems.append(f"field {f.name!r}: unknown type {f.type!r}")
            if (f.type == "enum") != bool(f.enum):
                problems.append(f"field {f.name!r}: enum values go with type enum, and only with it")
            if any(not isinstance(v, str) or "," in v for v in f.enum):
                problems.append(f"field {f.name!r}: enum values are strings without commas")
        sql_parts = [self.from_sql, self.tenant_column, *(f.column for f in self.fields)]
        for sql in [*sql_parts, *([self.deleted_column] if self.deleted_column is not None else [])]:
            if not sql.strip() or any(c in sql for c in ";$"):
                problems.append(f"SQL fragment {sql!r} is empty or holds ';' or '$'")
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        if self.id_field not in self.by_name:
            problems.append(f"id field {self.id_field!r} is not a field")
        if problems:
            raise ValueError(f"resource {self.name}: " + "; ".join(problems))
        try:
            _parse_sort(self, self.default_sort)
        except ListQueryError as exc:
            raise ValueError(f"resource {self.name}: default_sort: {exc}") from None

    @property
    def filterable(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.filterable]

    @property
    def sortable(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.sortable]


# ---------------------------------------------------------------- the parsed query


@dataclass(frozen=True)
class Filter:
    """``value`` is already converted to the field's Python type; a tuple for ``in``; for
    ``like`` the escaped SQL pattern."""

    field: str
    op: Op
    value: Any


class SortKey(NamedTuple):
    field: str
    descending: bool = False


@dataclass(frozen=True)
class ListQuery:
    page: int = 1
    limit: int = DEFAULT_LIMIT
    filters: tuple[Filter, ...] = ()
    sort: tuple[SortKey, ...] = ()
    fields: tuple[str, ...] = ()

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


class ListQueryError(ValueError):
    """Bad list parameters. ``field`` and ``message`` name the first problem; ``errors``
    holds all of them as ``[(field, message), ...]``."""

    def __init__(self, field: str, message: str, *, errors: Sequence[tuple[str, str]] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors: list[tuple[str, str]] = list(errors) if errors else [(field, message)]

    @property
    def details(self) -> list[dict[str, str]]:
        """The ``details`` of the error envelope."""
        return [{"field": f, "message": m} for f, m in self.errors]


# ---------------------------------------------------------------- parsing


def parse_list_query(
    spec: ResourceSpec, params: Mapping[str, Sequence[str]], *, reserved: Iterable[str] = ()
) -> ListQuery:
    """Read list parameters (``{name: [values]}``, as from ``multi_items()``).

    Names in ``reserved`` belong to the route (e.g. ``min_severity``) and are skipped; any
    other name that is not a filterable field is an error. All problems are reported at
    once in :attr:`ListQueryError.errors`.
    """
    skip = frozenset(reserved)
    errors: list[tuple[str, str]] = []

    def single(name: str) -> str | None:
        values = params.get(name) or []
        if len(values) > 1:
            errors.append((name, "given more than once"))
            return None
        return values[0].strip() if values else None

    page = _parse_int_param(single("page"), "page", 1, 1, MAX_OFFSET + 1, errors)
    limit = _parse_int_param(single("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT, errors)
    if (page - 1) * limit > MAX_OFFSET:
        errors.append(("page", f"(page - 1) * limit may not exceed {MAX_OFFSET}; narrow the filters instead"))

    sort: tuple[SortKey, ...] = ()
    raw_sort = single("sort")
    try:
        sort = _parse_sort(spec, raw_sort if raw_sort else spec.default_sort)
    except ListQueryError as exc:
        errors.extend(exc.errors)

    fields = tuple(f.name for f in spec.fields)
    raw_fields = single("fields")
    if raw_fields is not None:
        try:
            fields = _parse_fields(spec, raw_fields)
        except ListQueryError as exc:
            errors.extend(exc.errors)

    filters: list[Filter] = []
    for name, values in params.items():
        if name in PAGINATION_PARAMS or name in skip:
            continue
        fs = spec.by_name.get(name)
        if fs is None:
            errors.append((_shown(name), "unknown filter field; filterable: " + _names(spec.filterable)))
            continue
        if not fs.filterable:
            errors.append((name, "this field cannot be filtered; filterable: " + _names(spec.filterable)))
            continue
        for raw in values:
            try:
                filters.extend(_parse_filter(fs, raw))
            except ListQueryError as exc:
                errors.extend(exc.errors)
    if len(filters) > MAX_FILTERS:
        errors.append(("filters", f"at most {MAX_FILTERS} filters"))
    if errors:
        raise ListQueryError(errors[0][0], errors[0][1], errors=errors)
    return ListQuery(page=page, limit=limit, filters=tuple(filters), sort=sort, fields=fields)


def _parse_int_param(
    raw: str | None, name: str, default: int, low: int, high: int, errors: list[tuple[str, str]]
) -> int:
    if raw is None:
        return default
    if not _INT.match(raw) or not low <= int(raw) <= high:
        errors.append((name, f"must be an integer from {low} to {high}"))
        return default
    return int(raw)


def _parse_sort(spec: ResourceSpec, raw: str) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    errors: list[tuple[str, str]] = []
    for part in raw.split(","):
        part = part.strip()
        name = part.removeprefix("-")
        fs = spec.by_name.get(name)
        if not name:
            errors.append(("sort", "empty sort field"))
        elif fs is None or not fs.sortable:
            errors.append(("sort", f"cannot sort by {_shown(name)!r}; sortable: {_names(spec.sortable)}"))
        elif any(k.field == name for k in keys):
            errors.append(("sort", f"{name!r} given twice"))
        else:
            keys.append(SortKey(name, part.startswith("-")))
    if errors:
        raise ListQueryError(*errors[0], errors=errors)
    return tuple(keys)


def _parse_fields(spec: ResourceSpec, raw: str) -> tuple[str, ...]:
    wanted = [p.strip() for p in raw.split(",") if p.strip()]
    unknown = [n for n in wanted if n not in spec.by_name]
    if unknown:
        raise ListQueryError("fields", f"unknown field {_shown(unknown[0])!r}; fields: {_names(spec.fields)}")
    if not wanted:
        raise ListQueryError("fields", f"empty; fields: {_names(spec.fields)}")
    return tuple(dict.fromkeys([spec.id_field, *wanted]))


def _parse_filter(fs: FieldSpec, raw: str) -> list[Filter]:
    op = "eq"
    m = _OP_PREFIX.match(raw)
    if m:
        op = m.group(1).lower()
        raw = raw[m.end():]
        if op not in _ALL_OPS:
            raise ListQueryError(fs.name, f"unknown operator {_shown(m.group(1))!r}; use one of "
                                 + ", ".join(OPERATORS[fs.type]))
    raw = raw.strip()
    if fs.normalize is not None:
        try:
            raw = fs.normalize(raw)
        except ValueError as exc:
            raise ListQueryError(fs.name, str(exc)) from None
    if op not in OPERATORS[fs.type]:
        raise ListQueryError(fs.name, f"operator {op!r} does not apply to a {fs.type} field; use one of "
                             + ", ".join(OPERATORS[fs.type]))
    if op == "like":
        return [Filter(fs.name, "like", _like_pattern(fs, raw))]
    if op == "in":
        items = [v.strip() for v in raw.split(",")]
        if not raw.strip() or any(not v for v in items):
            raise ListQueryError(fs.name, "in: takes a comma list of values without empty items")
        if len(items) > MAX_IN_VALUES:
            raise ListQueryError(fs.name, f"in: takes at most {MAX_IN_VALUES} values")
        values = [_convert(fs, v) for v in items]
        if fs.type == "timestamp" and any(isinstance(v, _Day) for v in values):
            raise ListQueryError(fs.name, "in: takes full timestamps with a zone, not dates")
        return [Filter(fs.name, "in", tuple(dict.fromkeys(values)))]
    value = _convert(fs, raw)
    if isinstance(value, _Day):  # a date on a timestamp field: the whole UTC day
        start, end = value.start, value.start + timedelta(days=1)
        return {
            "eq": [Filter(fs.name, "gte", start), Filter(fs.name, "lt", end)],
            "gte": [Filter(fs.name, "gte", start)], "lt": [Filter(fs.name, "lt", start)],
            "gt": [Filter(fs.name, "gte", end)], "lte": [Filter(fs.name, "lt", end)],
        }[op]
    return [Filter(fs.name, op, value)]  # type: ignore[arg-type]  # op checked against the field's operators


class _Day(NamedTuple):
    start: datetime


def _convert(fs: FieldSpec, raw: str) -> Any:
    def bad(expected: str) -> ListQueryError:
        return ListQueryError(fs.name, f"{_shown(raw)!r} is not {expected}")

    if len(raw) > MAX_VALUE_LENGTH:
        raise ListQueryError(fs.name, f"value longer than {MAX_VALUE_LENGTH} characters")
    if "\x00" in raw:
        raise ListQueryError(fs.name, "value holds a NUL character")
    match fs.type:
        case "text":
            return raw
        case "enum":
            if raw not in fs.enum:
                raise ListQueryError(fs.name, f"{_shown(raw)!r} is not one of {', '.join(fs.enum)}")
            return raw
        case "int":
            if not _INT.match(raw) or not -(2**63) <= int(raw) < 2**63:
                raise bad("an integer")
            return int(raw)
        case "float":
            try:
                number = float(raw)
            except ValueError:
                raise bad("a number") from None
            if not math.isfinite(number):
                raise bad("a finite number")
            return number
        case "bool":
            lowered = raw.lower()
            if lowered not in ("true", "false"):
                raise bad("true or false")
            return lowered == "true"
        case "uuid":
            try:
                return uuid.UUID(raw)
            except ValueError:
                raise bad("a UUID") from None
        case "date":
            try:
                if not _DATE.match(raw):
                    raise ValueError
                return date.fromisoformat(raw)
            except ValueError:
                raise bad("a date (YYYY-MM-DD)") from None
        case "timestamp":
            try:
                if _DATE.match(raw):
                    return _Day(datetime.combine(date.fromisoformat(raw), time(), UTC))
                if not _TIMESTAMP.match(raw):
                    raise ValueError
                raw = _LOST_PLUS.sub(r"\1+\2", raw)
                ts = datetime.fromisoformat(raw)
            except ValueError:
                raise bad("an ISO 8601 timestamp with a zone, or a date") from None
            if ts.tzinfo is None:
                raise ListQueryError(fs.name, f"{_shown(raw)!r} has no zone; add Z or an offset such as +00:00")
            return ts
    raise AssertionError(fs.type)  # pragma: no cover


def _like_pattern(fs: FieldSpec, raw: str) -> str:
    _convert(fs, raw)  # length and NUL checks
    if not raw:
        raise ListQueryError(fs.name, "like: needs a pattern; * matches any characters")
    escaped = raw.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _names(fields: Iterable[FieldSpec]) -> str:
    return ", ".join(f.name for f in fields) or "(none)"


def _shown(text: str) -> str:
    """User text echoed in a message: short, printable."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 64 else text[:61] + "..."


# ---------------------------------------------------------------- SQL


class ListSql(NamedTuple):
    """``select_sql`` takes ``args``; ``count_sql`` takes ``count_args`` (the same without
    the LIMIT and OFFSET at the end)."""

    select_sql: str
    count_sql: str
    args: list[Any]

    @property
    def count_args(self) -> list[Any]:
        return self.args[:-2]


def build_list_sql(
    spec: ResourceSpec, q: ListQuery, tenant_id: str, *,
    extra_where: Sequence[tuple[str, Sequence[Any]]] = (), include_deleted: bool = False,
) -> ListSql:
    """The page query and its count; user values travel only as ``$n`` parameters.

    SQL text comes from the spec and from ``extra_where``, a list of ``(fragment, args)``
    written by the route's service, each fragment numbering its own parameters from
    ``$1``: ``[("severity_rank(severity) >= $1", [2])]``.
    """
    args: list[Any] = [tenant_id]
    where = [f"{spec.tenant_column} = $1"]
    if spec.deleted_column and not include_deleted:
        where.append(f"{spec.deleted_column} IS NULL")
    for f in q.filters:
        fs = spec.by_name[f.field]
        cast = _CASTS.get(fs.type, "")
        if f.op == "in":
            args.append(list(f.value))
            where.append(f"({fs.column}) = ANY(${len(args)}{cast}{'[]' if cast else ''})")
        elif f.op == "like":
            args.append(f.value)
            where.append(f"({fs.column}) ILIKE ${len(args)} ESCAPE '\\'")
        else:
            args.append(f.value)
            where.append(f"({fs.column}) {_SQL_OPS[f.op]} ${len(args)}{cast}")
    for fragment, fragment_args in extra_where:
        numbers = {int(n) for n in _PLACEHOLDER.findall(fragment)}
        if numbers != set(range(1, len(fragment_args) + 1)):
            raise ValueError(f"extra_where {fragment!r} must use $1..${len(fragment_args)}")
        where.append(f"({_renumber(fragment, len(args))})")
        args.extend(fragment_args)
    where_sql = " AND ".join(where)

    order = [f"({spec.by_name[k.field].column}) {'DESC' if k.descending else 'ASC'}" for k in q.sort]
    if not any(k.field == spec.id_field for k in q.sort):
        descending = q.sort[-1].descending if q.sort else False
        order.append(f"({spec.by_name[spec.id_field].column}) {'DESC' if descending else 'ASC'}")
    names = q.fields or tuple(f.name for f in spec.fields)
    columns = ", ".join(f'({spec.by_name[n].column}) AS "{n}"' for n in names)
    n = len(args)
    select_sql = (f"SELECT {columns} FROM {spec.from_sql} WHERE {where_sql}"
                  f" ORDER BY {', '.join(order)} LIMIT ${n + 1} OFFSET ${n + 2}")
    count_sql = f"SELECT count(*) FROM {spec.from_sql} WHERE {where_sql}"
    return ListSql(select_sql, count_sql, [*args, q.limit, q.offset])


def _renumber(fragment: str, base: int) -> str:
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + base}", fragment)


async def fetch_page(
    conn: asyncpg.Connection | asyncpg.Pool, spec: ResourceSpec, q: ListQuery, tenant_id: str, *,
    extra_where: Sequence[tuple[str, Sequence[Any]]] = (), include_deleted: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """One page of rows (dicts of the requested fields) and the total across pages.

    Both read one snapshot (a read-only repeatable-read transaction, unless the caller
    already holds one); the count is skipped when the page itself shows the total.
    """
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            return await fetch_page(acquired, spec, q, tenant_id, extra_where=extra_where,
                                    include_deleted=include_deleted)
    sql = build_list_sql(spec, q, tenant_id, extra_where=extra_where, include_deleted=include_deleted)
    if conn.is_in_transaction():
        return await _run(conn, sql, q)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _run(conn, sql, q)


async def _run(conn: asyncpg.Connection, sql: ListSql, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await conn.fetch(sql.select_sql, *sql.args)]
    if 0 < len(rows) < q.limit or (not rows and q.offset == 0):
        return rows, q.offset + len(rows)
    return rows, int(await conn.fetchval(sql.count_sql, *sql.count_args))


async def csv_chunks(rows: AsyncIterator[Any], header: Sequence[str], cells: Callable[[Any], Sequence[Any]], *,
                     chunk_rows: int) -> AsyncIterator[str]:
    """CSV text of ``rows`` (a server-side cursor, so an export of years holds one chunk in memory), the header
    first, then ``chunk_rows`` rows at a time: what every CSV export of the API streams."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    count = 0
    async for row in rows:
        writer.writerow(cells(row))
        count += 1
        if count % chunk_rows == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
