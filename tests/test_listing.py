"""The shared list conventions: parsing, SQL building, real PostgreSQL, and the FastAPI envelope."""

import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from schema.api import Envelope, ErrorEnvelope
from serve.errors import install
from serve.listing import list_params, page_envelope, sparse
from store.listing import (
    MAX_OFFSET,
    FieldSpec,
    Filter,
    ListQuery,
    ListQueryError,
    ResourceSpec,
    SortKey,
    build_list_sql,
    fetch_page,
    parse_list_query,
)

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

TABLE = "listing_things"
STATUSES = ("active", "drilling", "idle")
THINGS = ResourceSpec(
    name="things", from_sql=TABLE, default_sort="-created_at", deleted_column="deleted_at",
    fields=(
        FieldSpec("id", "id", "int"),
        FieldSpec("name", "name"),
        FieldSpec("status", "status", "enum", enum=STATUSES),
        FieldSpec("depth", "depth", "float"),
        FieldSpec("rating", "rating", "float"),
        FieldSpec("count", "count", "int"),
        FieldSpec("active", "active", "bool"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("day", "day", "date"),
        FieldSpec("ref", "ref", "uuid"),
        FieldSpec("notes", "notes", filterable=False, sortable=False),
    ),
)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def parse(query: dict[str, str | list[str]], **kw: Any) -> ListQuery:
    return parse_list_query(THINGS, {k: v if isinstance(v, list) else [v] for k, v in query.items()}, **kw)


def errors_of(query: dict[str, str | list[str]], **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(ListQueryError) as info:
        parse(query, **kw)
    return info.value.errors


# ---------------------------------------------------------------- parsing


def test_defaults() -> None:
    q = parse({})
    assert (q.page, q.limit, q.offset, q.filters) == (1, 20, 0, ())
    assert q.sort == (SortKey("created_at", True),)
    assert q.fields == tuple(f.name for f in THINGS.fields)


def test_page_limit_sort_fields() -> None:
    q = parse({"page": "3", "limit": "100", "sort": "-status, name", "fields": "name,status,name"})
    assert (q.page, q.limit, q.offset) == (3, 100, 200)
    assert q.sort == (SortKey("status", True), SortKey("name", False))
    assert q.fields == ("id", "name", "status")  # id always, duplicates once


REF = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("name", "pump", [Filter("name", "eq", "pump")]),
    ("name", "eq:pump", [Filter("name", "eq", "pump")]),
    ("name", "eq:urn:x", [Filter("name", "eq", "urn:x")]),
    ("name", "in:a, b,a", [Filter("name", "in", ("a", "b"))]),
    ("name", "like:pump*", [Filter("name", "like", "pump%")]),
    ("status", "in:active,drilling", [Filter("status", "in", ("active", "drilling"))]),
    ("status", "idle", [Filter("status", "eq", "idle")]),
    ("count", "gt:5", [Filter("count", "gt", 5)]),
    ("count", "-7", [Filter("count", "eq", -7)]),
    ("count", "in:1,2,3", [Filter("count", "in", (1, 2, 3))]),
    ("count", "lte:9223372036854775807", [Filter("count", "lte", 2**63 - 1)]),
    ("depth", "gte:1.5", [Filter("depth", "gte", 1.5)]),
    ("depth", "lt:1e3", [Filter("depth", "lt", 1000.0)]),
    ("active", "true", [Filter("active", "eq", True)]),
    ("active", "eq:FALSE", [Filter("active", "eq", False)]),
    ("ref", str(REF), [Filter("ref", "eq", REF)]),
    ("ref", f"in:{REF}", [Filter("ref", "in", (REF,))]),
    ("day", "gte:2025-01-02", [Filter("day", "gte", date(2025, 1, 2))]),
    ("created_at", "gte:2025-01-01T06:00:00Z", [Filter("created_at", "gte", T0 + timedelta(hours=6))]),
    ("created_at", "lt:2025-01-01T08:00:00+02:00", [Filter("created_at", "lt", T0 + timedelta(hours=6))]),
    # an unencoded + arrives as a space
    ("created_at", "lt:2025-01-01T08:00:00 02:00", [Filter("created_at", "lt", T0 + timedelta(hours=6))]),
    ("created_at", f"in:{T0.isoformat()}", [Filter("created_at", "in", (T0,))]),
    # a date on a timestamp field is that whole UTC day
    ("created_at", "2025-01-01", [Filter("created_at", "gte", T0), Filter("created_at", "lt", T0 + timedelta(1))]),
    ("created_at", "gte:2025-01-01", [Filter("created_at", "gte", T0)]),
    ("created_at", "lt:2025-01-01", [Filter("created_at", "lt", T0)]),
    ("created_at", "lte:2025-01-01", [Filter("created_at", "lt", T0 + timedelta(1))]),
    ("created_at", "gt:2025-01-01", [Filter("created_at", "gte", T0 + timedelta(1))]),
])
def test_each_operator_and_type(name: str, raw: str, expected: list[Filter]) -> None:
    assert list(parse({name: raw}).filters) == expected


def test_timestamp_offsets_compare_as_instants() -> None:
    (f,) = parse({"created_at": "gt:2025-01-01T02:00:00+02:00"}).filters
    assert f.value == T0 and f.value.utcoffset() == timedelta(hours=2)
    assert f.value.tzinfo == timezone(timedelta(hours=2))


def test_several_filters_on_one_field_are_kept() -> None:
    q = parse({"count": ["gte:1", "lt:10"], "status": "active"})
    assert [(f.field, f.op, f.value) for f in q.filters] == [
        ("count", "gte", 1), ("count", "lt", 10), ("status", "eq", "active")]


@pytest.mark.parametrize(("raw", "pattern"), [
    ("pump*", "pump%"),
    ("*pump*", "%pump%"),
    ("100%", "100\\%"),
    ("a_b", "a\\_b"),
    ("back\\slash*", "back\\\\slash%"),
    ("*", "%"),
])
def test_like_star_is_the_only_wildcard(raw: str, pattern: str) -> None:
    (f,) = parse({"name": f"like:{raw}"}).filters
    assert f.value == pattern


@pytest.mark.parametrize(("query", "field", "needle"), [
    ({"colour": "red"}, "colour", "unknown filter field"),
    ({"notes": "x"}, "notes", "cannot be filtered"),
    ({"name": "between:a,b"}, "name", "unknown operator 'between'"),
    ({"name": "gt:a"}, "name", "does not apply to a text field"),
    ({"count": "like:1*"}, "count", "does not apply to a int field"),
    ({"active": "in:true,false"}, "active", "does not apply"),
    ({"status": "bogus"}, "status", "not one of active, drilling, idle"),
    ({"status": "in:active,bogus"}, "status", "'bogus' is not one of"),
    ({"status": "in:active,,idle"}, "status", "without empty items"),
    ({"count": "1.5"}, "count", "not an integer"),
    ({"count": "9223372036854775808"}, "count", "not an integer"),
    ({"depth": "nan"}, "depth", "finite"),
    ({"depth": "deep"}, "depth", "not a number"),
    ({"active": "yes"}, "active", "true or false"),
    ({"ref": "not-a-uuid"}, "ref", "not a UUID"),
    ({"day": "2025-13-01"}, "day", "not a date"),
    ({"day": "20250101"}, "day", "not a date"),
    ({"created_at": "gte:yesterday"}, "created_at", "ISO 8601"),
    ({"created_at": "gte:2025-01-01T06:00:00"}, "created_at", "no zone"),
    ({"created_at": "in:2025-01-01"}, "created_at", "not dates"),
    ({"name": "like:"}, "name", "needs a pattern"),
    ({"name": "a\x00b"}, "name", "NUL"),
    ({"name": "x" * 501}, "name", "longer than"),
    ({"limit": "101"}, "limit", "from 1 to 100"),
    ({"limit": "0"}, "limit", "from 1 to 100"),
    ({"limit": ["10", "20"]}, "limit", "more than once"),
    ({"page": "0"}, "page", "integer"),
    ({"page": "two"}, "page", "integer"),
    ({"page": str(MAX_OFFSET // 100 + 2), "limit": "100"}, "page", "may not exceed"),
    ({"sort": "colour"}, "sort", "cannot sort by 'colour'"),
    ({"sort": "notes"}, "sort", "cannot sort by 'notes'"),
    ({"sort": "name,-name"}, "sort", "given twice"),
    ({"sort": "name,"}, "sort", "empty sort field"),
    ({"fields": "id,colour"}, "fields", "unknown field 'colour'"),
    ({"fields": ","}, "fields", "empty"),
])
def test_bad_input_names_the_field(query: dict[str, Any], field: str, needle: str) -> None:
    errors = errors_of(query)
    assert errors[0][0] == field
    assert needle in errors[0][1], errors


def test_all_problems_are_reported_together() -> None:
    errors = errors_of({"limit": "500", "colour": "red", "status": "bogus", "sort": "nope"})
    assert {f for f, _ in errors} == {"limit", "colour", "status", "sort"}


def test_reserved_route_params_are_not_filters() -> None:
    assert parse({"min_severity": "warning"}, reserved={"min_severity"}).filters == ()
    assert errors_of({"min_severity": "warning"})[0][0] == "min_severity"


def test_the_deepest_page_allowed() -> None:
    assert parse({"page": str(MAX_OFFSET // 100 + 1), "limit": "100"}).offset == MAX_OFFSET


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"fields": (FieldSpec("id", "id"), FieldSpec("id", "x"))}, "duplicate field"),
    ({"fields": (FieldSpec("id", "id"), FieldSpec("Bad Name", "x"))}, "bad field name"),
    ({"fields": (FieldSpec("id", "id"), FieldSpec("page", "x"))}, "bad field name"),
    ({"fields": (FieldSpec("id", "id; DROP TABLE x"),)}, "holds ';'"),
    ({"fields": (FieldSpec("id", "id"), FieldSpec("s", "s", "enum"))}, "enum values"),
    ({"fields": (FieldSpec("id", "id"), FieldSpec("s", "s", enum=("a",)))}, "enum values"),
    ({"fields": (FieldSpec("key", "key"),)}, "id field 'id'"),
    ({"fields": (FieldSpec("id", "id"),), "default_sort": "-nope"}, "default_sort"),
    ({"fields": (FieldSpec("id", "id"),), "from_sql": "t WHERE $1"}, "holds ';' or '$'"),
])
def test_bad_specs_fail_at_import(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        ResourceSpec(**{"name": "x", "from_sql": "t", **kwargs})


# ---------------------------------------------------------------- SQL text


def test_sql_shape_tenant_first_tiebreak_and_limits() -> None:
    q = parse({"status": "in:active,idle", "count": "gt:3", "sort": "-status", "fields": "name", "page": "2",
               "limit": "5"})
    sql = build_list_sql(THINGS, q, "t-a", extra_where=[("count <> $1 AND depth > $2", [99, 0.5])])
    assert sql.select_sql == (
        f'SELECT (id) AS "id", (name) AS "name" FROM {TABLE} WHERE tenant_id = $1 AND deleted_at IS NULL'
        " AND (status) = ANY($2) AND (count) > $3::bigint AND (count <> $4 AND depth > $5)"
        " ORDER BY (status) DESC, (id) DESC LIMIT $6 OFFSET $7")
    assert sql.count_sql == (
        f"SELECT count(*) FROM {TABLE} WHERE tenant_id = $1 AND deleted_at IS NULL"
        " AND (status) = ANY($2) AND (count) > $3::bigint AND (count <> $4 AND depth > $5)")
    assert sql.args == ["t-a", ["active", "idle"], 3, 99, 0.5, 5, 5]
    assert sql.count_args == sql.args[:-2]


def test_no_second_tiebreak_when_sorting_by_id_and_deleted_rows_on_request() -> None:
    sql = build_list_sql(THINGS, parse({"sort": "id,-name"}), "t", include_deleted=True)
    assert "ORDER BY (id) ASC, (name) DESC LIMIT" in sql.select_sql
    assert "deleted_at" not in sql.select_sql.split("FROM")[1]


def test_extra_where_must_number_its_own_parameters() -> None:
    with pytest.raises(ValueError, match=r"\$1..\$1"):
        build_list_sql(THINGS, parse({}), "t", extra_where=[("count = $2", [1])])


EVIL = ["'; DROP TABLE listing_things; --", '" OR 1=1 --', "$1", "$$x$$", "name) OR (true", "\\", "é\u202e",
        "*", "%_", "1 UNION SELECT password FROM users"]


def _random_text(rng: random.Random) -> str:
    alphabet = "abcXYZ019 '\"`;:.$%_*\\()-+/=<>#@!?\u00e9\u4e2d\U0001f600"  # no commas: in: splits on them
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))).strip() or "x"


def _cases() -> list[str]:
    rng = random.Random(20250101)
    return EVIL + [_random_text(rng) for _ in range(300)]


def test_user_text_never_reaches_the_sql() -> None:
    """A property test without hypothesis (not installed): seeded random texts and known attacks."""
    for text in _cases():
        text = text.replace(":", ";")  # "abc:" would read as an operator
        for query in ({"name": f"eq:{text}"}, {"name": f"like:{text}"}, {"name": f"in:{text},zz"}):
            sql = build_list_sql(THINGS, parse(query), text)  # the tenant id too
            benign = build_list_sql(THINGS, parse({"name": query["name"].split(":")[0] + ":zz"}), "t")
            assert (sql.select_sql, sql.count_sql) == (benign.select_sql, benign.count_sql)
            assert sql.args[0] == text and (text in sql.args[1] if query["name"][:3] == "in:" else sql.args[1])


def test_unknown_names_never_reach_the_sql() -> None:
    for text in EVIL:
        for query in ({text: "x"}, {"sort": text}, {"fields": text}):
            with pytest.raises(ListQueryError):
                parse(query)


# ---------------------------------------------------------------- real PostgreSQL


def _rows() -> list[tuple[Any, ...]]:
    """(tenant_id, id, name, status, depth, rating, count, active, created_at, day, ref, notes, deleted_at)"""
    names = ["pump_1", "pump%2", "PumpA3", "compressor", "meter", "tank"]
    rows = []
    for i in range(1, 31):
        created = T0 + timedelta(hours=10 * i)  # spans Jan 1 to Jan 13
        deleted = T0 if i in (29, 30) else None
        rows.append(("t-a", i, names[i % len(names)], STATUSES[i % 3], i * 10.5 if i % 5 else None,
                     Decimal(i) / 4, i * 100, i % 2 == 0, created, created.date(),
                     uuid.UUID(int=i), f"note {i}", deleted))
    for i in range(31, 36):
        rows.append(("t-b", i, "pump_1", "active", 1.0, Decimal(1), 5, True, T0, T0.date(), uuid.UUID(int=i),
                     None, None))
    return rows


ROWS = _rows()
LIVE_A = [r for r in ROWS if r[0] == "t-a" and r[12] is None]


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    await pool.execute(f"""
        DROP TABLE IF EXISTS {TABLE};
        CREATE TABLE {TABLE} (
            tenant_id text NOT NULL, id integer NOT NULL, name text NOT NULL, status text NOT NULL,
            depth double precision, rating numeric, count integer NOT NULL, active boolean NOT NULL,
            created_at timestamptz NOT NULL, day date NOT NULL, ref uuid NOT NULL, notes text,
            deleted_at timestamptz, PRIMARY KEY (tenant_id, id))""")
    await pool.copy_records_to_table(TABLE, records=ROWS)
    try:
        yield pool
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await pool.close()


async def page(pool: asyncpg.Pool, query: dict[str, Any], tenant: str = "t-a", **kw: Any) -> tuple[list[int], int]:
    rows, total = await fetch_page(pool, THINGS, parse(query), tenant, **kw)
    return [r["id"] for r in rows], total


async def test_tenant_isolation_and_soft_delete(pool: asyncpg.Pool) -> None:
    ids, total = await page(pool, {"limit": "100", "sort": "id"}, "t-b")
    assert (ids, total) == ([31, 32, 33, 34, 35], 5)
    ids, total = await page(pool, {"limit": "100", "sort": "id"})
    assert (ids, total) == (list(range(1, 29)), 28)
    assert (await page(pool, {"limit": "100", "sort": "id"}, include_deleted=True))[1] == 30
    assert await page(pool, {}, "nobody") == ([], 0)


@pytest.mark.parametrize(("query", "expect"), [
    ({"status": "in:active,drilling"}, lambda r: r[3] in ("active", "drilling")),
    ({"status": "idle"}, lambda r: r[3] == "idle"),
    ({"name": "like:pump*"}, lambda r: r[2].lower().startswith("pump")),
    ({"name": "like:pump%*"}, lambda r: r[2] == "pump%2"),
    ({"name": "like:pump_*"}, lambda r: r[2] == "pump_1"),
    ({"name": "like:*E*"}, lambda r: "e" in r[2].lower()),
    ({"name": "PumpA3"}, lambda r: r[2] == "PumpA3"),
    ({"name": "in:meter,tank"}, lambda r: r[2] in ("meter", "tank")),
    ({"depth": "gt:100"}, lambda r: r[4] is not None and r[4] > 100),
    ({"rating": "lte:2.5"}, lambda r: r[5] <= Decimal("2.5")),
    ({"count": ["gte:500", "lt:1500"]}, lambda r: 500 <= r[6] < 1500),
    ({"count": f"lt:{2**40}"}, lambda r: True),  # past int4: a comparison, not an encoder error
    ({"count": "in:100,200,99999999999"}, lambda r: r[6] in (100, 200)),
    ({"active": "false"}, lambda r: not r[7]),
    ({"created_at": "2025-01-02"}, lambda r: r[8].date() == date(2025, 1, 2)),
    ({"created_at": "lte:2025-01-02"}, lambda r: r[8].date() <= date(2025, 1, 2)),
    ({"created_at": "gt:2025-01-02"}, lambda r: r[8].date() > date(2025, 1, 2)),
    ({"created_at": "gte:2025-01-03T02:00:00+02:00"}, lambda r: r[8] >= datetime(2025, 1, 3, tzinfo=UTC)),
    ({"day": "lt:2025-01-03"}, lambda r: r[9] < date(2025, 1, 3)),
    ({"ref": f"in:{uuid.UUID(int=3)},{uuid.UUID(int=4)}"}, lambda r: r[1] in (3, 4)),
    ({"status": "active", "active": "true"}, lambda r: r[3] == "active" and r[7]),
])
async def test_filters_match_python(pool: asyncpg.Pool, query: dict[str, Any], expect: Any) -> None:
    ids, total = await page(pool, {**query, "sort": "id", "limit": "100"})
    wanted = [r[1] for r in LIVE_A if expect(r)]
    assert wanted, "a test that matches nothing proves little"
    assert (ids, total) == (wanted, len(wanted))


async def test_sort_with_tiebreak_pages_cover_every_row_once(pool: asyncpg.Pool) -> None:
    for sort, key in [("status", lambda r: (r[3], r[1])), ("-status", lambda r: (r[3], r[1])),
                      ("active,-count", lambda r: (r[7], -r[6])), ("-created_at", lambda r: (r[8], r[1]))]:
        seen: list[int] = []
        for n in range(1, 6):
            ids, total = await page(pool, {"sort": sort, "limit": "7", "page": str(n)})
            assert total == 28
            assert len(ids) == (7 if n <= 4 else 0)
            seen += ids
        expected = sorted(LIVE_A, key=key, reverse=sort.startswith("-"))
        assert seen == [r[1] for r in expected], sort


async def test_sparse_fields_and_types(pool: asyncpg.Pool) -> None:
    rows, total = await fetch_page(pool, THINGS, parse({"fields": "name,created_at", "sort": "id", "limit": "2"}),
                                   "t-a")
    assert total == 28
    assert rows == [{"id": 1, "name": "pump%2", "created_at": T0 + timedelta(hours=10)},
                    {"id": 2, "name": "PumpA3", "created_at": T0 + timedelta(hours=20)}]
    (full,), _ = await fetch_page(pool, THINGS, parse({"id": "5"}), "t-a")
    assert list(full) == [f.name for f in THINGS.fields]
    assert full["ref"] == uuid.UUID(int=5) and full["day"] == date(2025, 1, 3) and full["depth"] is None


async def test_totals_on_partial_empty_and_late_pages(pool: asyncpg.Pool) -> None:
    assert await page(pool, {"status": "idle", "sort": "id", "limit": "4", "page": "3"}) == ([26], 9)
    assert await page(pool, {"status": "idle", "sort": "id", "limit": "3", "page": "3"}) == ([20, 23, 26], 9)
    assert await page(pool, {"status": "idle", "limit": "4", "page": "9"}) == ([], 9)
    assert await page(pool, {"status": "idle", "name": "nothing-like-this"}) == ([], 0)


async def test_extra_where_and_a_connection_already_in_a_transaction(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        rows, total = await fetch_page(conn, THINGS, parse({"sort": "id", "status": "active"}), "t-a",
                                       extra_where=[("count > $1", [1000]), ("name <> $1", ["tank"])])
    wanted = [r[1] for r in LIVE_A if r[3] == "active" and r[6] > 1000 and r[2] != "tank"]
    assert ([r["id"] for r in rows], total) == (wanted, len(wanted))


async def test_evil_values_are_just_values(pool: asyncpg.Pool) -> None:
    for text in EVIL:
        for raw in (f"eq:{text}", f"like:{text}"):
            rows, total = await fetch_page(pool, THINGS, parse({"name": raw}), text)
            assert (rows, total) == ([], 0)
    assert await pool.fetchval(f"SELECT count(*) FROM {TABLE}") == len(ROWS)


# ---------------------------------------------------------------- FastAPI


class ThingPublic(BaseModel):
    id: int
    name: str
    status: str
    depth: float | None
    rating: float | None
    count: int
    active: bool
    created_at: datetime
    day: date
    ref: uuid.UUID
    notes: str | None


def make_app(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI()
    install(app)

    @app.get("/v1/things", response_model=Envelope[list[sparse(ThingPublic)]], response_model_exclude_unset=True,
             responses={422: {"model": ErrorEnvelope}})
    async def list_things(q: Annotated[ListQuery, list_params(THINGS, reserved={"tenant"})],
                          tenant: str = "t-a") -> dict[str, Any]:
        rows, total = await fetch_page(pool, THINGS, q, tenant)
        return page_envelope(rows, total, q)

    @app.get("/v1/things-of/{tenant}", response_model=Envelope[list[sparse(ThingPublic)]],
             response_model_exclude_unset=True)
    async def list_things_of(tenant: str, q: Annotated[ListQuery, list_params(THINGS)],
                             min_count: int = 0) -> dict[str, Any]:
        rows, total = await fetch_page(pool, THINGS, q, tenant, extra_where=[("count >= $1", [min_count])])
        return page_envelope(rows, total, q)

    return app


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(pool))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize(("query", "field"), [
    ("colour=red", "colour"),
    ("status=bogus", "status"),
    ("status=in:active,bogus", "status"),
    ("name=between:a", "name"),
    ("limit=101", "limit"),
    ("page=0", "page"),
    ("created_at=gte:yesterday", "created_at"),
    ("sort=-colour", "sort"),
    ("fields=id,secret", "fields"),
])
async def test_422_envelope_names_the_field(client: httpx.AsyncClient, query: str, field: str) -> None:
    response = await client.get(f"/v1/things?{query}")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == field, error


async def test_page_envelope_over_http(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/things", params=[("fields", "id,name"), ("sort", "-id"), ("limit", "2"),
                                                       ("page", "2"), ("tenant", "t-a"),
                                                       ("created_at", "gte:2025-01-01"),
                                                       ("created_at", "lt:2025-02-01T00:00:00+00:00")])
    assert response.status_code == 200, response.text
    assert response.json() == {"data": [{"id": 26, "name": "PumpA3"}, {"id": 25, "name": "pump%2"}],
                               "meta": {"pagination": {"page": 2, "limit": 2, "total": 28}}}
    full = (await client.get("/v1/things?id=4&tenant=t-a")).json()["data"][0]
    assert full == {"id": 4, "name": "meter", "status": "drilling", "depth": 42.0, "rating": 1.0,
                    "count": 400, "active": True, "created_at": "2025-01-02T16:00:00Z", "day": "2025-01-02",
                    "ref": str(uuid.UUID(int=4)), "notes": "note 4"}


async def test_openapi_documents_the_parameters(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    params = {p["name"]: p for p in spec["paths"]["/v1/things"]["get"]["parameters"]}
    assert set(params) == {"page", "limit", "sort", "fields", "tenant", *(f.name for f in THINGS.filterable)}
    assert params["limit"]["schema"]["maximum"] == 100
    assert "Sortable: id, name, status" in params["sort"]["description"]
    assert "notes" not in params["sort"]["description"]
    assert "one of active, drilling, idle" in params["status"]["description"]
    assert "`*` as the wildcard" in params["name"]["description"]


async def test_route_params_are_not_filters_even_unreserved(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/things-of/t-a?min_count=2500&sort=id&fields=id")
    assert response.status_code == 200, response.text
    assert response.json() == {"data": [{"id": 25}, {"id": 26}, {"id": 27}, {"id": 28}],
                               "meta": {"pagination": {"page": 1, "limit": 20, "total": 4}}}
    response = await client.get("/v1/things-of/t-a?min_cont=2500")
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "min_cont", "message": "unknown filter field; filterable: " + ", ".join(
            f.name for f in THINGS.filterable)}]
