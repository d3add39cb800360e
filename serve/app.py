"""The FastAPI app and its Ray Serve deployment."""

import gc
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from ray import serve
from starlette.middleware.cors import CORSMiddleware

from config import Settings
from schema.api import ErrorEnvelope
from serve import console, errors
from serve.bodylimit import BodyLimit
from serve.deps import ACCESS_COOKIE, CSRF_HEADER, current_principal, current_user
from serve.edge import SecurityHeaders
from serve.ingress import InFlightLimit, ReplicaHttpServer, RequestContext
from serve.routers import (
    ack_links,
    alerts,
    analytics,
    api_keys,
    audit_logs,
    auth,
    emissions,
    equipment,
    escalation_chains,
    field_events,
    health,
    maintenance,
    metrics,
    ml_models,
    notification_channels,
    notification_deliveries,
    notification_policies,
    notification_preferences,
    notifications,
    oncall_schedules,
    predictions,
    production,
    readings,
    rules,
    silences,
    sync,
    telemetry,
    tenant,
    users,
    wells,
)
from serve.routers.telemetry import MAX_BODY_BYTES as TELEMETRY_MAX_BODY_BYTES

API_DESCRIPTION = """Real-time telemetry and alerting for oilfield equipment.

Authenticate with `Authorization: Bearer <token>`: an access JWT from `POST /v1/auth/login`, or an API
key (`wpk_...`) for machines. Every query is scoped to the caller's tenant (and row-level security in
the database backs it). Each endpoint names the permission it needs.
Errors use the envelope `{"error": {"code", "message", "details": [{"field", "message"}]}}`."""


def build_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="WellPulse", version="0.1.0", description=API_DESCRIPTION)
    app.state.settings = settings
    app.state.trusted_proxies = settings.trusted_proxy_networks
    if settings.cors_origin_list:  # off unless an allow-list is configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list, allow_credentials=True,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID",
                                          CSRF_HEADER])
    app.add_middleware(SecurityHeaders, hsts=settings.public_url.startswith("https://"))
    app.add_middleware(BodyLimit, default=errors.MAX_REQUEST_BYTES, by_prefix=[
        ("/v1/telemetry", TELEMETRY_MAX_BODY_BYTES),
        ("/v1/production/import", settings.production_import_max_bytes),
        ("/v1/sync", settings.sync_max_chunk_bytes),
        ("/v1/sync/attachments", settings.attachment_max_bytes),
    ])
    errors.install(app)
    app.add_middleware(InFlightLimit, limit=settings.http_max_in_flight)
    app.add_middleware(RequestContext)  # outermost: every answer, a 503 of the limit too, has its request id
    for module in (health, metrics, auth, users, api_keys, audit_logs, tenant, telemetry, readings, alerts,
                   production, analytics, emissions, rules, silences,
                   # maintenance before equipment: /v1/equipment/due-maintenance is not an equipment id
                   wells, maintenance, equipment, sync, field_events, predictions, ml_models,
                   notification_channels, notification_deliveries, notification_policies, notifications, ack_links,
                   notification_preferences, oncall_schedules, escalation_chains,
                   console):
        app.include_router(module.router)
    install_openapi(app)
    return app


_ERRORS = {
    400: "Malformed request: a body that is not JSON, a bad cursor.",
    401: "Missing, expired or revoked credentials.",
    403: "The caller lacks the permission this endpoint names.",
    404: "No such resource in the caller's tenant.",
    422: "Invalid input; `details` names each field that failed.",
    429: "Rate limit reached; `Retry-After` says when to try again.",
    503: "A backing service (database, NATS) is unavailable.",
}
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "An access JWT from POST /v1/auth/login, or an API key `wpk_...`."},
    "cookieAuth": {"type": "apiKey", "in": "cookie", "name": ACCESS_COOKIE,
                   "description": "The httpOnly cookie set by a login with `client: web`."},
}


def route_contexts(app: FastAPI) -> list[tuple[Any, Any]]:
    """(original route, effective route) pairs: the effective one has the full path and dependencies."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x includes routers lazily
    except ImportError:  # older FastAPI: app.routes is flat
        return [(r, r) for r in app.routes]
    return [(rc.original_route, rc) for rc in iter_route_contexts(app.routes)]


def _auth_of(route: APIRoute) -> tuple[bool, str | None]:
    """(needs a principal, the permission it names) from the route's dependency tree."""
    signed_in, permission = False, None
    stack: list[Any] = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        signed_in = signed_in or dep.call in (current_principal, current_user)
        permission = permission or getattr(dep.call, "permission", None)
        stack.extend(dep.dependencies)
    return signed_in, permission


def _error_envelope_schemas() -> dict[str, Any]:
    schema = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, "ErrorEnvelope": schema}


def install_openapi(app: FastAPI) -> None:
    """OpenAPI with what FastAPI cannot infer: auth schemes, each endpoint's permission, error answers.

    Our handlers answer every error with the envelope (422 included, instead of FastAPI's
    HTTPValidationError), so the document says so; the property-based test holds responses to it.
    """
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.update(_error_envelope_schemas())
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        components["securitySchemes"] = SECURITY_SCHEMES
        envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
        for route, context in route_contexts(app):
            if not isinstance(route, APIRoute):
                continue
            path = context.path
            signed_in, permission = _auth_of(route)
            for method in route.methods or ():
                operation = doc["paths"].get(path, {}).get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                codes = [400, 422, 503]
                if signed_in:
                    codes += [401, 403, 429]
                    operation["security"] = [{"bearerAuth": []}, {"cookieAuth": []}]
                if "{" in path:
                    codes.append(404)
                for code in codes:
                    answer = responses.setdefault(str(code), {"description": _ERRORS[code]})
                    answer["content"] = envelope
                if permission:
                    note = f"**Permission:** `{permission}`."
                    operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
                    operation["x-permission"] = permission
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def build_deployment(settings: Settings) -> serve.Application:
    """The API as a Serve deployment whose replicas serve HTTP themselves (serve/ingress.py): Serve places,
    health-checks, restarts and scales them; no Serve proxy sits in front. Each replica builds its own app (a
    FastAPI app holds locks and does not pickle)."""

    @serve.deployment(
        name="api",
        num_replicas=settings.serve_replicas,
        graceful_shutdown_timeout_s=10,
        ray_actor_options={"num_cpus": 0},
        logging_config={"enable_access_log": False},  # access logs would carry ?token=
    )
    class Api:
        async def __init__(self) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
            self.app = build_app(settings)
            self.http = ReplicaHttpServer(self.app, settings.host, settings.port)
            await self.http.start()
            # What the replica built to start (the app, its routes and models, imported modules) lives as long as
            # the replica: kept out of the collector's full passes, which otherwise walk it all and stall every
            # socket of the replica for tens of milliseconds at a time (bench.ws_fanout's p99).
            gc.freeze()

        async def check_health(self) -> None:
            self.http.check()

        async def __del__(self) -> None:
            await self.http.stop()
            services = getattr(self.app.state, "services", None)
            if services is not None:
                await services.close()

    deployment: Any = Api  # serve.deployment made the class a Deployment; ray's types keep the class
    application: serve.Application = deployment.bind()
    return application
