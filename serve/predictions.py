"""The models as the API sees them: predictions, the model listing, resets, failure reports and backtests.

Predictions are read from the database (the equipment actors write them at each checkpoint), so they answer
wherever the actors run. A reset and a failure report are committed here and carried to the running actors by
a ``ctl.<tenant>`` message naming the equipment (``model_reset``, ``failure``). A backtest replays stored
readings through `models.backtest.backtest_snapshots` in a worker thread.
"""

import asyncio
import logging
from datetime import datetime
from typing import Any

from models import Rule, Snapshot, rules_for_equipment, tenant_rules_for
from models.backtest import backtest_snapshots, verdict_agreement
from schema.predictions import MAX_BACKTEST_DAYS, BacktestRequest
from serve.errors import ApiError
from serve.listing import tenant_page
from serve.services import Services
from serve.uow import tenant_work
from store import alerts as alert_store
from store import predictions as store
from store import rules as rule_store
from store.audit import AuditContext
from store.listing import ListQuery

__all__ = ["MAX_BACKTEST_SNAPSHOTS", "backtest", "get_predictions", "list_models", "report_failure", "reset_model"]

log = logging.getLogger(__name__)
MAX_BACKTEST_SNAPSHOTS = 50_000  # about 5 s of replay on one core (pump jack, 5 sensors)


def _not_found(equipment_id: str) -> ApiError:
    return ApiError(404, f"equipment {equipment_id} not found")


async def get_predictions(services: Services, tenant_id: str, equipment_id: str) -> dict[str, Any]:
    async with services.tenant_tx(tenant_id) as conn:
        etype = await store.equipment_type(conn, tenant_id, equipment_id)
        if etype is None:
            raise _not_found(equipment_id)
        row = await store.get_predictions(conn, tenant_id, equipment_id)
    if row is None:
        return {"equipment_id": equipment_id, "equipment_type": etype}
    failure, drift = dict(row["failure"]), dict(row["drift"])
    return {
        "equipment_id": equipment_id,
        "equipment_type": row["equipment_type"],
        "model_version": row["model_version"],
        "samples_seen": row["samples_seen"],
        "values_seen": row["values_seen"],
        "last_learned_at": row["last_learned_ts"],
        "updated_at": row["updated_at"],
        "warming_up": row["warming_up"],
        "state_bytes": row["state_bytes"],
        "anomaly": {
            "score": row["anomaly_score"],
            "equipment_score": row["equipment_score"],
            "multivariate_score": row["multivariate_score"],
            "sensors": [
                {"sensor": name, "anomaly_score": s["anomaly_score"], "expected_mean": s["expected_mean"],
                 "expected_std": s["expected_std"], "warming_up": s["warming_up"],
                 "drift": {"drifts": s["drifts"], "last_drift_at": s["last_drift_ts"],
                           "rebaselining": s["rebaselining"]}}
                for name, s in sorted(dict(row["sensors"]).items())
            ],
        },
        "failure": {
            "probability": row["failure_probability"],
            "horizon_seconds": row["horizon_seconds"],
            "horizon_days": failure.get("horizon_days", row["horizon_seconds"] / 86_400.0),
            "labels_seen": failure.get("labels_seen", 0),
            "failures_seen": failure.get("failures_seen", 0),
            "last_failure_at": failure.get("last_failure_ts"),
            "last_maintenance_at": failure.get("last_maintenance_ts"),
            "runtime_days": failure.get("runtime_days", 0.0),
        },
        "drift": {"enabled": drift.get("enabled", True), "rebaselining": drift.get("rebaselining", []),
                  "events": drift.get("events", {})},
    }


async def list_models(services: Services, tenant_id: str, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    return await tenant_page(services, tenant_id, store.ML_MODELS, q)


async def reset_model(services: Services, audit: AuditContext, equipment_id: str) -> dict[str, Any]:
    """Drop the equipment's saved model (committed and audited here), then tell its actor to start afresh.

    The actor drops the model it holds and warms up a new one from the next reading; if the message is
    lost or no actor runs, the dropped checkpoint still means a fresh model when it is next loaded.
    """
    tenant_id = audit.tenant_id
    async with tenant_work(services, tenant_id, audit) as uow:
        if await store.equipment_type(uow.conn, tenant_id, equipment_id) is None:
            raise _not_found(equipment_id)
        old = await store.get_predictions(uow.conn, tenant_id, equipment_id)
        deleted = await store.delete_model(uow.conn, tenant_id, equipment_id)
        before = None if old is None else {k: old[k] for k in ("model_version", "samples_seen", "last_learned_ts")}
        await uow.record(action="reset", entity_type="model", entity_id=equipment_id,
                         old=before, new={"samples_seen": 0, "checkpoint_deleted": deleted})
        uow.notify_actors("model_reset", equipment_id=equipment_id)
    return {"equipment_id": equipment_id, "checkpoint_deleted": deleted}


async def report_failure(services: Services, tenant_id: str, equipment_id: str, failed_at: datetime) -> None:
    """A failure of this equipment at `failed_at` (reported from the field): a label for its failure model.

    Call after the report is committed. The equipment's actor labels the window before `failed_at` as
    "failed" and teaches the model shared by the equipment type; the same report twice is learned once. For
    other helpers (offline sync, maintenance): a ``failure_repair`` maintenance record needs no call, the
    actors read those themselves on their next reload.
    """
    if failed_at.tzinfo is None:
        raise ValueError("failed_at needs a time zone")
    await services.notify_actors(tenant_id, "failure", equipment_id=equipment_id, failed_at=failed_at.isoformat())


def _rules(equipment_id: str, equipment_type: str, stored: list[dict[str, Any]], body: BacktestRequest) -> list[Rule]:
    """What the actor runs (the type's defaults, the tenant's rules) with the request's rules on top, all at the
    request's sensitivity. A stored rule that cannot be built is skipped, as the actors skip it; a bad rule of the
    request is the caller's mistake (422)."""
    tenant = tenant_rules_for(stored, equipment_id, equipment_type)
    requested = [spec.model_dump() for spec in body.rules]
    rules, rejected = rules_for_equipment(equipment_type, [*tenant, *requested], body.sensitivity)
    for bad in rejected:
        if bad.index >= len(tenant):
            raise ApiError(422, "invalid rule", details=[{"field": f"rules.{bad.index - len(tenant)}",
                                                          "message": bad.reason}])
    return rules


async def backtest(services: Services, tenant_id: str, equipment_id: str, body: BacktestRequest) -> dict[str, Any]:
    """Replay the stored readings of ``[from, to)`` through fresh models (the actors' code, no look-ahead)."""
    if body.end <= body.start:
        raise ApiError(422, "invalid range", details=[{"field": "to", "message": "must be after from"}])
    if (body.end - body.start).total_seconds() > MAX_BACKTEST_DAYS * 86_400:
        raise ApiError(422, "range too long", details=[
            {"field": "to", "message": f"at most {MAX_BACKTEST_DAYS} days after from"}])
    async with services.tenant_tx(tenant_id) as conn:
        etype = await store.equipment_type(conn, tenant_id, equipment_id)
        if etype is None:
            raise _not_found(equipment_id)
        stored = [dict(r) for r in await rule_store.list_rules(conn, tenant_id)]
        rows = await store.snapshots_between(conn, tenant_id, equipment_id, body.start, body.end,
                                             MAX_BACKTEST_SNAPSHOTS + 1)
        judged = [dict(r) for r in await alert_store.judged_alerts(conn, tenant_id, equipment_id, body.start,
                                                                    body.end)]
    if len(rows) > MAX_BACKTEST_SNAPSHOTS:
        raise ApiError(422, "range too large", details=[
            {"field": "to", "message": f"the range holds more than {MAX_BACKTEST_SNAPSHOTS} snapshots; narrow it"}])
    rules = _rules(equipment_id, etype, stored, body)
    snapshots = [Snapshot(r["ts"], r["vals"]) for r in rows]
    result = await asyncio.to_thread(  # CPU-bound: the event loop keeps serving other requests
        backtest_snapshots, snapshots, equipment_id=equipment_id, equipment_type=etype, rules=rules,
        sensitivity=body.sensitivity, seed=services.settings.model_seed,
        max_points=body.max_points if body.include_scores else None,
    )
    verdicts = verdict_agreement(result["alerts"], judged) if judged else None
    return {"equipment_id": equipment_id, "equipment_type": etype, "start": body.start, "end": body.end, **result,
            "verdicts": verdicts}
