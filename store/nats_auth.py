"""NATS authorization: the app's user and one feed user per tenant.

- The app user (``wellpulse-app``) may do everything; its password is random, made once and kept in
  ``app.password`` (mode 0600) beside the server's data.
- Tenant ``t``'s feed user is ``feed-t``; its password is ``base64url(HMAC-SHA256(feed_secret, t))``, stable
  and printable (``wellpulse nats feed-credentials t``) without being stored. The feed secret comes from
  ``WELLPULSE_NATS_FEED_SECRET`` or else from ``feed.secret`` (0600), made once.
- A feed user may publish only to ``tele.<t>.>``, the Sparkplug B group ``<t>`` (``spBv1.0/<t>/#``) and
  ``simctl.<t>.faults`` (the simulator's ground truth: each fault it injects, announced beside its control subject);
  it may take its group's Sparkplug commands (NCMD, DCMD) at QoS 0. To get JetStream PubAcks it may subscribe to
  its own inbox prefix ``_INBOX.feed-<t>.>`` only (nats-py: ``connect(inbox_prefix=feed_inbox_prefix(t))``), so it
  cannot read other clients' replies, and to ``simctl.<t>`` (the simulator's fault control), answering requests it
  receives (``allow_responses``). No ``$JS.API``, no other tenant, no other stream.

MQTT: the server's built-in MQTT listener (`mqtt_block`; it needs ``server_name`` and JetStream) authenticates
MQTT clients against the same users, and an MQTT topic ``tele/<t>/<equipment>`` is the subject
``tele.<t>.<equipment>``: the feed user's permissions decide what a device may publish. A feed user gets no
``$MQTT.sub.>`` (the delivery subjects of QoS 1 subscriptions, shared by the whole account: with it a NATS client
could read other tenants' MQTT deliveries), so a device subscribes at QoS 0; publishing at QoS 1 needs nothing more.

Tenant ids are checked with :func:`schema.ids.check_tenant_id` before they reach the config text, and every
value is written as a quoted string.

>>> redact_url("nats://wellpulse-app:s3cret@127.0.0.1:4222")
'nats://wellpulse-app:***@127.0.0.1:4222'
>>> redact_url("nats://a:b@h1:1,nats://h2:2")
'nats://a:***@h1:1,nats://h2:2'
>>> with_credentials("nats://app:x@127.0.0.1:4222", "feed-acme", "pw")
'nats://feed-acme:pw@127.0.0.1:4222'
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from config.secrets import read_or_make_secret
from schema.ids import check_tenant_id
from schema.subjects import simctl_subject, simctl_truth_subject, tele_tenant_filter

APP_USER = "wellpulse-app"
FEED_USER_PREFIX = "feed-"
APP_PASSWORD_FILE = "app.password"  # noqa: S105  a name or a file name, not a secret
FEED_SECRET_FILE = "feed.secret"  # noqa: S105  a name or a file name, not a secret


def feed_user(tenant_id: str) -> str:
    return FEED_USER_PREFIX + check_tenant_id(tenant_id)


def feed_inbox_prefix(tenant_id: str) -> str:
    """The inbox prefix a feed connection must use so JetStream's PubAcks reach it."""
    return f"_INBOX.{feed_user(tenant_id)}"


def feed_password(feed_secret: str, tenant_id: str) -> str:
    digest = hmac.new(feed_secret.encode(), check_tenant_id(tenant_id).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sparkplug_group_filter(tenant_id: str) -> str:
    """Sparkplug B topics of the group named like the tenant, as NATS's MQTT listener names them
    (``spBv1.0/<t>/...`` is ``spBv1//0.<t>. ...``; see gateway/sparkplug.py)."""
    return f"spBv1//0.{check_tenant_id(tenant_id)}.>"


def feed_permissions(tenant_id: str) -> dict[str, object]:
    tenant = check_tenant_id(tenant_id)
    return {
        "publish": {"allow": [tele_tenant_filter(tenant_id), simctl_truth_subject(tenant_id),
                              sparkplug_group_filter(tenant_id)]},
        # Sparkplug edge nodes take their commands (a rebirth request) at QoS 0.
        "subscribe": {"allow": [f"{feed_inbox_prefix(tenant_id)}.>", simctl_subject(tenant_id),
                                f"spBv1//0.{tenant}.NCMD.>", f"spBv1//0.{tenant}.DCMD.>"]},
        "allow_responses": True,
    }


def app_password(secrets_dir: Path) -> str:
    return read_or_make_secret(Path(secrets_dir) / APP_PASSWORD_FILE)


def feed_secret(secrets_dir: Path, configured: str | None = None) -> str:
    """``configured`` (``WELLPULSE_NATS_FEED_SECRET``) when set, else the data dir's own."""
    return configured or read_or_make_secret(Path(secrets_dir) / FEED_SECRET_FILE)


def _q(value: str) -> str:
    # A JSON string is a quoted string in the NATS config syntax; the values reaching here are checked
    # ids, urlsafe base64 and subjects, so nothing needs escaping, but quoting keeps it that way.
    return json.dumps(value)


def _user_block(user: str, password: str, permissions: dict[str, object] | None) -> str:
    parts = [f"user: {_q(user)}", f"password: {_q(password)}"]
    if permissions is not None:
        pub = ", ".join(_q(s) for s in permissions["publish"]["allow"])  # type: ignore[index]  # feed_permissions' shape
        sub = ", ".join(_q(s) for s in permissions["subscribe"]["allow"])  # type: ignore[index]  # feed_permissions' shape
        parts.append(f"permissions: {{ publish: {{ allow: [{pub}] }}, subscribe: {{ allow: [{sub}] }}, "
                     f"allow_responses: {'true' if permissions.get('allow_responses') else 'false'} }}")
    return "    { " + ", ".join(parts) + " }"


def authorization_block(app_user: str, app_pw: str, secret: str, tenants: Iterable[str]) -> str:
    """The ``authorization { users = [...] }`` block: the app user (everything) and one feed user per tenant."""
    for name, value in (("app user", app_user), ("app password", app_pw)):
        if not value or any(c in value for c in '"\\\n\r\t '):
            raise ValueError(f"{name} must be non-empty without quotes, backslashes or whitespace")
    lines = [_user_block(app_user, app_pw, None)]
    for tenant in sorted(set(tenants)):
        check_tenant_id(tenant)
        lines.append(_user_block(feed_user(tenant), feed_password(secret, tenant), feed_permissions(tenant)))
    return "authorization {\n  users = [\n" + ",\n".join(lines) + "\n  ]\n}\n"


def mqtt_block(port: int, host: str | None = None) -> str:
    """The ``mqtt { ... }`` block: NATS's MQTT listener (3.1.1 and 5) for feeds that speak MQTT, authenticated
    by the ``authorization`` users. Needs ``server_name`` and JetStream (`server_name_line`).

    >>> print(mqtt_block(1883, "127.0.0.1"), end="")
    mqtt {
      listen: "127.0.0.1:1883"
    }
    """
    if not 0 < port < 65536:
        raise ValueError(f"MQTT port {port} out of range")
    listen = f"{host}:{port}" if host else f"0.0.0.0:{port}"
    return f"mqtt {{\n  listen: {_q(listen)}\n}}\n"


def server_name_line(name: str) -> str:
    """``server_name``: the MQTT listener refuses to start without one (its session state lives in JetStream
    streams named after the server)."""
    if not name or any(c in name for c in '"\\\n\r\t '):
        raise ValueError("server name must be non-empty without quotes, backslashes or whitespace")
    return f"server_name: {_q(name)}\n"


def mqtt_url(nats_url: str | None, user: str, password: str, port: int) -> str | None:
    """The ``mqtt://user:password@host:port`` a device connects to: the NATS server's host, the MQTT port.

    >>> mqtt_url("nats://wellpulse-app:x@10.0.0.5:4222", "feed-acme", "pw", 1883)
    'mqtt://feed-acme:pw@10.0.0.5:1883'
    """
    if not nats_url:
        return None
    host = urlsplit(nats_url.split(",")[0].strip()).hostname
    if host is None:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"mqtt://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}"


def url_credentials(url: str | None) -> tuple[str, str] | None:
    """(user, password) in a NATS URL (the first of a comma-separated list), if it has both."""
    if not url:
        return None
    parts = urlsplit(url.split(",")[0].strip())
    if parts.username and parts.password:
        return unquote(parts.username), unquote(parts.password)
    return None


def url_user(url: str | None) -> str | None:
    if not url:
        return None
    user = urlsplit(url.split(",")[0].strip()).username
    return unquote(user) if user else None


def _replace_userinfo(url: str, userinfo: str) -> str:
    parts = urlsplit(url)
    if parts.hostname is None:
        return url
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{userinfo}@{host}" if userinfo else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def redact_url(url: str | None) -> str:
    """The URL(s) with any password replaced by ``***``: for logs and banners."""
    if not url:
        return str(url)
    out = []
    for one in url.split(","):
        try:
            parts = urlsplit(one.strip())
            if parts.password is None:
                out.append(one)
                continue
            out.append(_replace_userinfo(one.strip(), f"{parts.username or ''}:***"))
        except ValueError:
            out.append("<unparseable url>")
    return ",".join(out)


def with_credentials(url: str, user: str | None, password: str | None = None) -> str:
    """Each URL in ``url`` with its credentials replaced (or removed when ``user`` is None)."""
    userinfo = ""
    if user:
        userinfo = quote(user, safe="")
        if password:
            userinfo += ":" + quote(password, safe="")
    return ",".join(_replace_userinfo(one.strip(), userinfo) for one in url.split(","))
