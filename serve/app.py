"""The FastAPI app and its Ray Serve deployment."""

from fastapi import FastAPI
from ray import serve

from config import Settings
from serve import errors
from serve.routers import alerts, api_keys, audit_logs, auth, health, metrics, readings, telemetry, tenant, users

API_DESCRIPTION = """Real-time telemetry and alerting for oilfield equipment.

Authenticate with `Authorization: Bearer <token>`: an access JWT from `POST /v1/auth/login`, or an API
key (`wpk_...`) for machines. Every query is scoped to the caller's tenant (and row-level security in
the database backs it). Each endpoint names the permission it needs.
Errors use the envelope `{"error": {"code", "message", "details": [{"field", "message"}]}}`."""


def build_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="WellPulse", version="0.1.0", description=API_DESCRIPTION)
    app.state.settings = settings
    errors.install(app)
    for module in (health, metrics, auth, users, api_keys, audit_logs, tenant, telemetry, readings, alerts):
        app.include_router(module.router)
    return app


def build_deployment(settings: Settings):
    app = build_app(settings)

    @serve.deployment(
        name="api",
        num_replicas=settings.serve_replicas,
        max_ongoing_requests=100,  # the default 5 collapses under load (DESIGN.md 9)
        graceful_shutdown_timeout_s=5,
        ray_actor_options={"num_cpus": 0},
        logging_config={"enable_access_log": False},  # access logs would carry ?token=
    )
    @serve.ingress(app)
    class Api:
        pass

    return Api.bind()
