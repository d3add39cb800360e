"""Acknowledge links used: a token's nonce recorded once (`notify.acklinks`)."""

from datetime import datetime

from store.db import Executor

__all__ = ["link_used", "use_link"]


async def use_link(conn: Executor, tenant_id: str, nonce: str, alert_id: int, *, now: datetime) -> bool:
    """Record the link as used; False when it already was. Run it in the transaction that acknowledges."""
    return await conn.fetchval(
        "INSERT INTO ack_link_uses (tenant_id, nonce, alert_id, used_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING RETURNING true", tenant_id, nonce, alert_id, now) is not None


async def link_used(conn: Executor, tenant_id: str, nonce: str) -> bool:
    return await conn.fetchval("SELECT true FROM ack_link_uses WHERE tenant_id = $1 AND nonce = $2",
                               tenant_id, nonce) is not None
