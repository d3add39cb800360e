"""Prometheus exposition, gathered from the actors at scrape time."""

import asyncio
import hmac
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from schema.api import ErrorEnvelope
from serve.deps import ServicesDep, bearer_token
from serve.edge import EDGE_REGISTRY
from serve.errors import ApiError
from serve.notifications import notification_metrics
from store import alerts as alert_store

router = APIRouter(tags=["health"])


class SnapshotCollector:
    """Turns one snapshot of actor stats into metric families (names per DESIGN.md 7b)."""

    def __init__(self, tenants: dict[str, dict[str, Any]], open_alerts: list[Any], ws_clients: int) -> None:
        self.tenants = tenants
        self.open_alerts = open_alerts
        self.ws_clients = ws_clients

    def collect(self) -> Iterator[Metric]:
        ingested = CounterMetricFamily("wellpulse_readings_ingested", "Sensor readings stored", labels=["tenant"])
        duplicates = CounterMetricFamily("wellpulse_readings_duplicate",
                                         "Readings received again and not stored twice", labels=["tenant"])
        messages = CounterMetricFamily("wellpulse_telemetry_messages", "Telemetry messages acked after commit",
                                       labels=["tenant"])
        dlq = CounterMetricFamily("wellpulse_dlq_messages", "Messages sent to the dead-letter subject",
                                  labels=["tenant", "reason"])
        dlq_device = CounterMetricFamily("wellpulse_dlq_device_messages",
                                         "Dead-lettered messages by the equipment their subject names (at most "
                                         "1,000 per tenant, then device=\"other\")",
                                         labels=["tenant", "device", "reason"])
        errors = CounterMetricFamily("wellpulse_batch_errors", "Batches handed back for redelivery",
                                     labels=["tenant"])
        lag = GaugeMetricFamily("wellpulse_consumer_lag_messages", "Messages not yet delivered to the consumer",
                                labels=["tenant"])
        pending = GaugeMetricFamily("wellpulse_consumer_ack_pending_messages", "Delivered, not yet acked",
                                    labels=["tenant"])
        up = GaugeMetricFamily("wellpulse_tenant_actor_up", "1 when the tenant's consumer runs", labels=["tenant"])
        write = HistogramMetricFamily("wellpulse_batch_write_seconds", "Time to commit one batch of readings",
                                      labels=["tenant"])
        for tenant, st in self.tenants.items():
            c = st.get("counters")
            up.add_metric([tenant], 1.0 if st.get("running") else 0.0)
            if not c:
                continue
            ingested.add_metric([tenant], c["readings_ingested"])
            duplicates.add_metric([tenant], c["readings_duplicate"])
            messages.add_metric([tenant], c["messages"])
            errors.add_metric([tenant], c["errors"])
            for reason, n in c["dlq"].items():
                dlq.add_metric([tenant, reason], n)
            for (device, reason), n in c.get("dlq_device", {}).items():
                dlq_device.add_metric([tenant, device, reason], n)
            lag.add_metric([tenant], st["lag_pending"])
            pending.add_metric([tenant], st["lag_ack_pending"])
            cumulative, buckets = 0, []
            for bound, n in zip(st["write_buckets"], st["write_hist"], strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            write.add_metric([tenant], buckets, st["write_sum"])
        open_alerts = GaugeMetricFamily("wellpulse_open_alerts", "Alerts not yet resolved",
                                        labels=["tenant", "severity"])
        for row in self.open_alerts:
            open_alerts.add_metric([row["tenant_id"], row["severity"]], row["n"])
        ws = GaugeMetricFamily("wellpulse_websocket_clients", "Connected alert WebSocket clients (this replica)")
        ws.add_metric([], self.ws_clients)
        yield from (ingested, duplicates, messages, dlq, dlq_device, errors, lag, pending, up, write, open_alerts, ws)
        yield from notification_metrics(self.tenants)


def metrics_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Per-tenant figures are not for the public: ``Authorization: Bearer <WELLPULSE_METRICS_TOKEN>``."""
    expected = request.app.state.settings.secret("metrics_token")
    given = bearer_token(authorization) or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "the metrics token is missing or wrong", headers={"WWW-Authenticate": "Bearer"})


@router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_token)],
            responses={401: {"model": ErrorEnvelope, "description": "the metrics token is missing or wrong"}},
            description="Prometheus exposition. Needs `Authorization: Bearer <metrics token>` (the"
                        " `WELLPULSE_METRICS_TOKEN`, or `<data_dir>/secrets/metrics_token`).")
async def metrics(services: ServicesDep) -> Response:
    try:
        status = await asyncio.wait_for(services.supervisor().status.remote(), 5)
        tenants = status["tenants"]
    except Exception:
        tenants = {}
    open_alerts = await alert_store.count_open_alerts(services.pool)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(tenants, open_alerts, services.hub.client_count()))
    return Response(generate_latest(registry) + generate_latest(EDGE_REGISTRY), media_type=CONTENT_TYPE_LATEST)
