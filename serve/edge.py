"""What every answer and every client address goes through at the edge: security headers, CORS, proxies.

Behind a reverse proxy the TCP peer is the proxy, so every user would share one address (one attacker locks
everyone out of sign-in). `client_address` believes ``X-Forwarded-For`` / ``Forwarded`` only from a peer in
``WELLPULSE_TRUSTED_PROXIES``, and walks the chain from the right: the first hop that is not a trusted proxy
is the client. A forwarded header from anyone else is ignored and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from prometheus_client import CollectorRegistry, Counter

__all__ = ["EDGE_REGISTRY", "SPOOFED_FORWARDED", "SecurityHeaders", "client_address", "forwarded_chain"]

Network = IPv4Network | IPv6Network
EDGE_REGISTRY = CollectorRegistry(auto_describe=True)
SPOOFED_FORWARDED = Counter(
    "wellpulse_spoofed_forwarded_headers", "Forwarded client addresses sent by a peer that is not a trusted proxy"
    " (ignored)", registry=EDGE_REGISTRY)

# Swagger UI and ReDoc load their scripts from a CDN; everything else is JSON and may load nothing.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
            "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'")
DOCS_PATHS = ("/docs", "/redoc")


def _ip(text: str) -> IPv4Address | IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # 192.0.2.1:4711
        text = text.split(":", 1)[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def forwarded_chain(x_forwarded_for: str | None, forwarded: str | None) -> list[str]:
    """Hop addresses, client first, from ``Forwarded`` (RFC 7239) or else ``X-Forwarded-For``.

    >>> forwarded_chain("203.0.113.7, 10.0.0.2", None)
    ['203.0.113.7', '10.0.0.2']
    >>> forwarded_chain(None, 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"')
    ['192.0.2.60', '[2001:db8::1]:4711']
    """
    if forwarded:
        hops = []
        for element in forwarded.split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    hops.append(value.strip().strip('"'))
        return hops
    if x_forwarded_for:
        return [h.strip() for h in x_forwarded_for.split(",") if h.strip()]
    return []


def client_address(peer: str | None, headers: Any, trusted: Sequence[Network]) -> str | None:
    """The client's address: the peer, or from a trusted proxy the rightmost untrusted forwarded hop.

    >>> from ipaddress import ip_network
    >>> proxies = [ip_network("10.0.0.0/8")]
    >>> client_address("10.0.0.2", {"x-forwarded-for": "198.51.100.9, 203.0.113.7"}, proxies)
    '203.0.113.7'
    >>> client_address("203.0.113.7", {"x-forwarded-for": "1.2.3.4"}, proxies)  # not a proxy: ignored
    '203.0.113.7'
    >>> client_address("10.0.0.2", {"x-forwarded-for": "not-an-ip"}, proxies)
    '10.0.0.2'
    """
    xff, fwd = headers.get("x-forwarded-for"), headers.get("forwarded")
    if peer is None or not (xff or fwd):
        return peer
    if not _trusted(_ip(peer), trusted):
        SPOOFED_FORWARDED.inc()
        return peer
    address = peer
    for hop in reversed(forwarded_chain(xff, fwd)):
        ip = _ip(hop)
        if ip is None:  # garbage (or "unknown") from here leftwards: the last address we could check
            break
        address = str(ip)
        if not _trusted(ip, trusted):
            break
    return address


def _trusted(ip: IPv4Address | IPv6Address | None, trusted: Iterable[Network]) -> bool:
    return ip is not None and any(ip.version == net.version and ip in net for net in trusted)


class SecurityHeaders:
    """ASGI middleware: ``nosniff``, no referrer, no framing, a strict CSP, HSTS when served over https.

    Headers the handler set itself (an attachment's ``CSP: sandbox``, say) are kept.
    """

    def __init__(self, app: Any, *, hsts: bool) -> None:
        self.app = app
        common = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                  (b"x-frame-options", b"DENY"), (b"cross-origin-opener-policy", b"same-origin")]
        if hsts:
            common.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        self.api = [*common, (b"content-security-policy", API_CSP.encode())]
        self.docs = [*common, (b"content-security-policy", DOCS_CSP.encode())]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.docs if scope.get("path", "").startswith(DOCS_PATHS) else self.api

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in extra if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
