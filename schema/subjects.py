"""NATS stream and subject names; the only place subjects are spelled out.

>>> tele_subject("acme", "PJ-0042")
'tele.acme.PJ-0042'
>>> tele_subject("acme", "a.b")
Traceback (most recent call last):
...
schema.ids.InvalidIdentifier: invalid equipment id 'a.b': expected ^[A-Za-z0-9_-]{1,128}$
"""

from schema.ids import check_equipment_id, check_tenant_id

TELEMETRY_STREAM = "TELEMETRY"
ALERTS_STREAM = "ALERTS"
FIELD_STREAM = "FIELD"
DLQ_STREAM = "DLQ"

TELEMETRY_SUBJECTS = "tele.>"
ALERTS_SUBJECTS = "alerts.>"
FIELD_SUBJECTS = "field.>"
DLQ_SUBJECTS = "dlq.>"


def tele_subject(tenant_id: str, equipment_id: str) -> str:
    return f"tele.{check_tenant_id(tenant_id)}.{check_equipment_id(equipment_id)}"


def tele_msg_id(tenant_id: str, local_id: str) -> str:
    """The ``Nats-Msg-Id`` of a telemetry message: ``local_id`` (the sender's id for it, e.g. equipment and
    timestamp) under its tenant.

    JetStream deduplicates by this header across the whole stream, and every tenant publishes to the one TELEMETRY
    stream: without the tenant, two tenants' readings of the same equipment name at the same instant share an id,
    and the second is dropped as a duplicate of the first.

    >>> tele_msg_id("acme", "PJ-1@2026-12-04T06:00:00.000Z")
    'acme/PJ-1@2026-12-04T06:00:00.000Z'
    """
    return f"{check_tenant_id(tenant_id)}/{local_id}"


def tele_tenant_filter(tenant_id: str) -> str:
    return f"tele.{check_tenant_id(tenant_id)}.>"


def alerts_subject(tenant_id: str, equipment_id: str) -> str:
    return f"alerts.{check_tenant_id(tenant_id)}.{check_equipment_id(equipment_id)}"


def alerts_tenant_filter(tenant_id: str) -> str:
    return f"alerts.{check_tenant_id(tenant_id)}.>"


def field_subject(tenant_id: str, equipment_id: str) -> str:
    return f"field.{check_tenant_id(tenant_id)}.{check_equipment_id(equipment_id)}"


def dlq_subject(tenant_id: str) -> str:
    return f"dlq.{check_tenant_id(tenant_id)}"


def ctl_subject(tenant_id: str) -> str:
    return f"ctl.{check_tenant_id(tenant_id)}"


def authz_subject(tenant_id: str) -> str:
    """Core NATS (not a stream): a user, session or API key changed; replicas drop what they cached."""
    return f"authz.{check_tenant_id(tenant_id)}"


AUTHZ_SUBJECTS = "authz.>"


def inapp_subject(tenant_id: str) -> str:
    """Core NATS (not a stream): in-app notifications just committed, for the WebSocket hub to push to their users
    (the inbox, `GET /v1/notifications`, is what keeps them; a push missed is read there)."""
    return f"inapp.{check_tenant_id(tenant_id)}"


def simctl_subject(tenant_id: str) -> str:
    """Core NATS: a running simulator accepts faults for ``tenant_id`` on demand here.

    Outside ``tele.>`` on purpose: control traffic must not land in the TELEMETRY stream.
    """
    return f"simctl.{check_tenant_id(tenant_id)}"


def simctl_truth_subject(tenant_id: str) -> str:
    """Core NATS: the simulator announces each fault it injects (its ground truth) here.

    Beside the control subject, not on it: the simulator does not hear its own announcements. The app's
    connection and the tenant's feed user (``store.nats_auth.feed_permissions``) may publish there.
    """
    return f"{simctl_subject(tenant_id)}.faults"


def split_tele_subject(subject: str) -> tuple[str, str]:
    """Tenant and equipment of a ``tele.<tenant>.<equipment>`` subject, validated."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != "tele":
        raise ValueError(f"not a telemetry subject: {subject!r}")
    return check_tenant_id(parts[1]), check_equipment_id(parts[2])
