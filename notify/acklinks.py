"""Acknowledge links: a signed, expiring token that acknowledges one alert, carried by every notification.

A token names the tenant, the alert, a nonce (the delivery's id: each message has its own link) and when it
expires, signed with HMAC-SHA256 under the ``ack_link_key`` from configuration::

    v1.<tenant>.<alert id>.<nonce>.<expires, unix seconds>.<base64url HMAC of everything before it>

Verifying needs no database: a forged, altered or expired token is refused before anything is read. That a token
is used once is the store's (`store.ack_links`): the nonce is recorded in the transaction that acknowledges.
"""

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

__all__ = ["AckLink", "AckLinkError", "AckLinks", "sign", "verify"]

_TOKEN = re.compile(
    r"^v1\.([a-z0-9][a-z0-9-]{0,62})\.([0-9]{1,19})\.([0-9a-f]{32})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$")


class AckLinkError(ValueError):
    """A token that cannot acknowledge: ``reason`` is ``malformed``, ``forged`` or ``expired``."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the acknowledge link is {reason}")
        self.reason = reason


@dataclass(frozen=True)
class AckLink:
    """What a token says.

    >>> link = AckLink("acme", 42, "0" * 32, expires=1_900_000_000)
    >>> token = sign(b"k" * 32, link)
    >>> token.rsplit(".", 1)[0]
    'v1.acme.42.00000000000000000000000000000000.1900000000'
    >>> verify(b"k" * 32, token, now=1_800_000_000) == link
    True
    >>> verify(b"k" * 32, token, now=1_900_000_000)
    Traceback (most recent call last):
    ...
    notify.acklinks.AckLinkError: the acknowledge link is expired
    >>> verify(b"x" * 32, token, now=0)
    Traceback (most recent call last):
    ...
    notify.acklinks.AckLinkError: the acknowledge link is forged
    """

    tenant_id: str
    alert_id: int
    nonce: str
    expires: int

    @property
    def payload(self) -> str:
        return f"v1.{self.tenant_id}.{self.alert_id}.{self.nonce}.{self.expires}"


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(key: bytes, link: AckLink) -> str:
    return f"{link.payload}.{_mac(key, link.payload)}"


def verify(key: bytes, token: str, *, now: float) -> AckLink:
    """The link a token names; `AckLinkError` when it is malformed, not signed by ``key``, or expired."""
    found = _TOKEN.match(token)
    if found is None:
        raise AckLinkError("malformed")
    tenant_id, alert_id, nonce, expires, mac = found.groups()
    link = AckLink(tenant_id, int(alert_id), nonce, int(expires))
    if not hmac.compare_digest(mac, _mac(key, link.payload)):
        raise AckLinkError("forged")
    if now >= link.expires:
        raise AckLinkError("expired")
    return link


@dataclass(frozen=True)
class AckLinks:
    """Makes the link a notification carries: ``<base_url>/v1/ack-links/<token>``, valid ``ttl_seconds``.

    >>> links = AckLinks(b"k" * 32, "https://wp.example.com/", 3600.0)
    >>> token, url = links.make("acme", 7, "ab" * 16, now=1_800_000_000)
    >>> url == "https://wp.example.com/v1/ack-links/" + token, verify(b"k" * 32, token, now=1_800_003_599).alert_id
    (True, 7)
    """

    key: bytes
    base_url: str
    ttl_seconds: float

    def make(self, tenant_id: str, alert_id: int, nonce: str, *, now: float) -> tuple[str, str]:
        token = sign(self.key, AckLink(tenant_id, alert_id, nonce, int(now + self.ttl_seconds)))
        return token, f"{self.base_url.rstrip('/')}/v1/ack-links/{token}"
