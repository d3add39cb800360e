"""List endpoints in FastAPI: the query as a route parameter, the page as an envelope.

The parsing and SQL live in ``store.listing``; this module documents the parameters in
OpenAPI, maps :class:`~store.listing.ListQueryError` to a 422 envelope naming the field,
and builds ``{"data": [...], "meta": {"pagination": {...}}}`` (`json_envelope`: as JSON already, for large
answers). A route::

    WELLS = ResourceSpec(name="wells", from_sql="wells", default_sort="-created_at", deleted_column="deleted_at",
                         fields=(FieldSpec("id", "id"), FieldSpec("name", "name"), ...))

    WELL_PAGE = Envelope.__class_getitem__(sparse_list(WellPublic))  # at module level: see sparse_list

    @router.get("", response_model=WELL_PAGE, response_model_exclude_unset=True,
                responses={422: {"model": ErrorEnvelope}})
    async def list_wells(
        services: ServicesDep,
        principal: Annotated[Principal, require("wells:read")],
        q: Annotated[ListQuery, list_params(WELLS)],
    ) -> dict[str, Any]:
        rows, total = await fetch_page(services.pool, WELLS, q, principal.tenant_id)
        return page_envelope(rows, total, q)

A route's own query parameters (``min_severity: str = "info"``) are found in the route's
declaration and are not read as filters. Name them in ``list_params(SPEC,
reserved={"min_severity"})`` anyway when one shares a name with a field of the spec (the
route's declaration then wins, in OpenAPI too) or when the route reads a parameter from
the raw query string without declaring it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from types import GenericAlias
from typing import Annotated, Any, cast

import orjson
from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel, Field, create_model

from schema.api import Pagination
from serve.errors import ApiError
from serve.services import Services
from store.listing import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    OPERATORS,
    PAGINATION_PARAMS,
    FieldSpec,
    ListQuery,
    ListQueryError,
    ResourceSpec,
    fetch_page,
    parse_list_query,
)

__all__ = ["json_envelope", "list_params", "page_envelope", "sparse", "sparse_list", "tenant_page"]

_TYPE_HINTS = {
    "text": "text", "int": "integer", "float": "number", "bool": "true or false", "uuid": "UUID",
    "date": "date YYYY-MM-DD", "timestamp": "ISO 8601 timestamp with a zone, or a date (that whole UTC day)",
}


def list_params(spec: ResourceSpec, *, reserved: Iterable[str] = ()) -> Any:
    """``q: Annotated[ListQuery, list_params(SPEC)]``: the parsed list query of the request.

    ``page``, ``limit``, ``sort``, ``fields`` and one parameter per filterable field (not
    in ``reserved``) appear in OpenAPI; the values are read from the raw query string, so
    repeated filters (``?created_at=gte:..&created_at=lt:..``) work. Any other name is a
    422 naming it, unless the route declares it or it is in ``reserved``.
    """
    skip = frozenset(reserved)
    ours = PAGINATION_PARAMS | {f.name for f in spec.filterable if f.name not in skip}
    route_params: dict[int, frozenset[str]] = {}

    async def list_query(request: Request, **_declared: Any) -> ListQuery:
        params: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            params.setdefault(name, []).append(value)
        route = request.scope.get("route")
        if id(route) not in route_params:
            route_params[id(route)] = frozenset(_query_names(getattr(route, "dependant", None))) - ours
        try:
            return parse_list_query(spec, params, reserved=skip | route_params[id(route)])
        except ListQueryError as exc:
            raise ApiError(422, f"invalid list query: {exc.message}", details=exc.details) from exc

    declared = [
        _query("page", int, 1, f"Page number, from 1; (page - 1) * limit may not exceed {MAX_OFFSET}.", ge=1),
        _query("limit", int, DEFAULT_LIMIT, f"Items per page, 1 to {MAX_LIMIT}.", ge=1, le=MAX_LIMIT),
        _query("sort", str | None, None,
               f"Comma list of fields, `-` for descending (default `{spec.default_sort}`). Sortable: "
               + ", ".join(f.name for f in spec.sortable) + "."),
        _query("fields", str | None, None,
               f"Comma list of the fields to return (`{spec.id_field}` always is): "
               + ", ".join(f.name for f in spec.fields) + "."),
        *(_query(f.name, list[str] | None, None, _filter_help(f))
          for f in spec.filterable if f.name not in skip),
    ]
    list_query.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # FastAPI reads the parameters from it
        [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request), *declared],
        return_annotation=ListQuery,
    )
    return Depends(list_query)


def _query_names(dependant: Any) -> Iterator[str]:
    """The query parameters a route declares, its dependencies' included: not filters, even
    when the author forgot ``reserved``. Only public fields of FastAPI's ``Dependant``."""
    for param in getattr(dependant, "query_params", None) or ():
        alias = getattr(param, "alias", None)
        if isinstance(alias, str):
            yield alias
    for sub in getattr(dependant, "dependencies", None) or ():
        yield from _query_names(sub)


def _query(name: str, annotation: Any, default: Any, description: str, **constraints: Any) -> inspect.Parameter:
    # Aliased, so a field called "request" or a Python keyword cannot clash with our names.
    return inspect.Parameter(
        f"p_{name}", inspect.Parameter.KEYWORD_ONLY, default=default,
        annotation=Annotated[annotation, Query(alias=name, description=description, **constraints)],
    )


def _filter_help(f: FieldSpec) -> str:
    ops = OPERATORS[f.type]
    kind = "one of " + ", ".join(f.enum) if f.type == "enum" else _TYPE_HINTS[f.type]
    text = f"Filter on {f.name} ({kind}): `{ops[0]}:value` or a bare value"
    if len(ops) > 1:
        text += "; operators " + ", ".join(ops)
    if "in" in ops:
        text += "; `in:a,b`"
    if "like" in ops:
        text += "; `like:` with `*` as the wildcard, case-insensitive"
    return text + ". May repeat; filters are ANDed."


async def tenant_page(services: Services, tenant_id: str, spec: ResourceSpec, q: ListQuery, *,
                      extra_where: Sequence[tuple[str, list[Any]]] = ()) -> tuple[list[dict[str, Any]], int]:
    """A page of a resource in the tenant's transaction: what every list service reads."""
    async with services.tenant_tx(tenant_id) as conn:
        return await fetch_page(conn, spec, q, tenant_id, extra_where=extra_where)


def page_envelope(rows: Sequence[dict[str, Any]], total: int, q: ListQuery) -> dict[str, Any]:
    """``{"data": rows, "meta": {"pagination": {"page", "limit", "total"}}}``.

    >>> page_envelope([{"id": 1}], 41, ListQuery(page=3, limit=20))
    {'data': [{'id': 1}], 'meta': {'pagination': {'page': 3, 'limit': 20, 'total': 41}}}
    """
    return {"data": list(rows), "meta": {"pagination": {"page": q.page, "limit": q.limit, "total": total}}}


def json_envelope(data: list[dict[str, Any]], pagination: Pagination | None = None) -> Response:
    """``{"data": ..., "meta": ...}`` serialized by orjson, skipping FastAPI's re-validation of the answer.

    Series are thousands of plain rows of our own: building a model per row and validating it
    again cost ~35 ms for 1,440 buckets, orjson ~1 ms (bench/api.py). The route still declares
    its ``response_model`` for OpenAPI, and the JSON is the same (UTC times end in ``Z``).
    """
    meta = {"pagination": pagination.model_dump() if pagination else None}
    return Response(orjson.dumps({"data": data, "meta": meta}, option=orjson.OPT_UTC_Z),
                    media_type="application/json")


@cache
def sparse(model: type[BaseModel], id_field: str = "id") -> type[BaseModel]:
    """``model`` with every field but ``id_field`` optional: the item schema of a list with
    ``?fields=``. Use it with ``response_model_exclude_unset=True`` so fields not asked for
    are left out rather than sent as null.

    >>> from pydantic import BaseModel
    >>> class WellPublic(BaseModel):
    ...     id: str
    ...     name: str
    >>> sparse(WellPublic).model_validate({"id": "w1"}).model_dump(exclude_unset=True)
    {'id': 'w1'}
    """
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name == id_field:
            fields[name] = (info.annotation, info)
        else:
            optional = cast(Any, info.annotation) | None  # a field's annotation is a type (pydantic says type | None)
            fields[name] = (optional, Field(None, description=info.description))
    return create_model(f"{model.__name__}Item", __doc__=model.__doc__, **fields)


def sparse_list(model: type[BaseModel], id_field: str = "id") -> Any:
    """``list[sparse(model)]``, the data of a list route's envelope::

        WELL_PAGE = Envelope.__class_getitem__(sparse_list(WellPublic))

    at the router's module level: pydantic registers a generic model parametrised there under its name in that
    module, so Ray Serve pickles the app's routes by reference. ``Envelope[list[sparse(WellPublic)]]`` does the
    same, but mypy cannot read a call as a type (hence ``Any`` and the explicit ``__class_getitem__``).
    """
    return GenericAlias(list, (sparse(model, id_field),))
