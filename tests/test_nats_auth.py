"""NATS authorization: a tenant's feed credentials publish to ``tele.<tenant>.>`` and nothing else.

Against a real embedded nats-server with authorization (its own, so reloads here disturb no other test).
What nats-py does with a refused operation: the server answers ``-ERR 'Permissions Violation ...'`` and
drops it, the connection stays up, nats-py hands the error (lower-cased) to ``error_cb``; a JetStream publish that was
refused gets no PubAck, so ``js.publish`` raises ``nats.errors.TimeoutError``.
"""

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.js.errors import NotFoundError

from schema.ids import InvalidIdentifier
from schema.subjects import simctl_subject
from store import bus, nats_auth
from store.embedded import EmbeddedNats

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

TENANTS = ("alpha", "beta")
ACK_WAIT = 1.0
AUTH_REFUSED = r"(?i)authorization violation"  # nats-py lower-cases the -ERR text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    nats_server = EmbeddedNats(tmp_path_factory.mktemp("nats-auth"), tenants=TENANTS).start()
    try:
        yield nats_server
    finally:
        nats_server.stop()


@pytest.fixture(scope="module")
async def app(server: EmbeddedNats) -> AsyncIterator[Any]:
    nc = await nats.connect(server.url)
    await bus.ensure_streams(nc.jetstream())
    try:
        yield nc
    finally:
        await nc.close()


class Feed:
    """A connection with one tenant's feed credentials that records what the server refused."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Any = None

    async def connect(self, url: str, tenant: str | None, **kw: Any) -> "Feed":
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        if tenant is not None:
            kw.setdefault("inbox_prefix", nats_auth.feed_inbox_prefix(tenant))
        self.nc = await nats.connect(url, error_cb=on_error, allow_reconnect=False, connect_timeout=2, **kw)
        return self

    async def wait_error(self, text: str, timeout: float = 3.0) -> str:
        for _ in range(int(timeout / 0.05)):
            for err in self.errors:
                if text.lower() in err.lower():  # nats-py lower-cases the server's -ERR text
                    return err
            await asyncio.sleep(0.05)
        raise AssertionError(f"no error containing {text!r}; got {self.errors}")


@pytest.fixture
async def feed_alpha(server: EmbeddedNats, app: Any) -> AsyncIterator[Feed]:
    feed = await Feed().connect(server.feed_url("alpha"), "alpha")
    try:
        yield feed
    finally:
        await feed.nc.close()


async def test_feed_publishes_to_its_own_subjects_and_gets_pub_acks(feed_alpha: Feed, app: Any) -> None:
    ack = await feed_alpha.nc.jetstream().publish("tele.alpha.PJ-0001", b'{"x": 1}', timeout=5)
    assert ack.stream == "TELEMETRY" and ack.seq > 0
    stored = await app.jetstream().get_last_msg("TELEMETRY", "tele.alpha.PJ-0001")
    assert stored.data == b'{"x": 1}'
    assert feed_alpha.errors == []


@pytest.mark.parametrize("subject", ["tele.beta.PJ-0001", "alerts.alpha.PJ-0001", "dlq.alpha", "ctl.alpha",
                                     "field.alpha.PJ-0001", "tele.alphabet.PJ-1", "simctl.beta"])
async def test_feed_cannot_publish_outside_its_telemetry(feed_alpha: Feed, app: Any, subject: str) -> None:
    with pytest.raises(nats.errors.TimeoutError):
        await feed_alpha.nc.jetstream().publish(subject, b'{"x": 2}', timeout=ACK_WAIT)
    await feed_alpha.wait_error(f'Permissions Violation for Publish to "{subject}"')
    assert feed_alpha.nc.is_connected  # refused, not disconnected
    if subject.startswith("tele."):
        with pytest.raises(NotFoundError):
            await app.jetstream().get_last_msg("TELEMETRY", subject)


async def test_feed_cannot_use_the_jetstream_api(feed_alpha: Feed) -> None:
    with pytest.raises(nats.errors.TimeoutError):
        await feed_alpha.nc.jetstream(timeout=ACK_WAIT).stream_info("TELEMETRY")
    await feed_alpha.wait_error('Permissions Violation for Publish to "$JS.API.STREAM.INFO.TELEMETRY"')


@pytest.mark.parametrize("subject", ["tele.>", "tele.beta.>", "tele.alpha.>", "_INBOX.>", "_INBOX.feed-beta.>",
                                     ">", "alerts.alpha.>"])
async def test_feed_cannot_subscribe_to_others_traffic(feed_alpha: Feed, app: Any, subject: str) -> None:
    sub = await feed_alpha.nc.subscribe(subject)
    await feed_alpha.nc.flush()
    await feed_alpha.wait_error(f'Permissions Violation for Subscription to "{subject}"')
    await app.publish(subject.replace(">", "x.y").replace("*", "x"), b"secret")
    await app.flush()
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.3)


async def test_feed_without_its_inbox_prefix_gets_no_pub_acks(server: EmbeddedNats, app: Any) -> None:
    feed = await Feed().connect(server.feed_url("alpha"), None)  # default prefix _INBOX: not allowed
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await feed.nc.jetstream().publish("tele.alpha.PJ-0002", b"{}", timeout=ACK_WAIT)
        await feed.wait_error("Permissions Violation for Subscription to \"_INBOX.")
    finally:
        await feed.nc.close()


@pytest.mark.parametrize("creds", ["none", "wrong-password", "other-tenants-password", "unknown-tenant"])
async def test_bad_credentials_are_refused(server: EmbeddedNats, creds: str) -> None:
    url = {
        "none": server.public_url,
        "wrong-password": nats_auth.with_credentials(server.public_url, "feed-alpha", "not-the-password"),
        "other-tenants-password": nats_auth.with_credentials(
            server.public_url, "feed-alpha", nats_auth.feed_password(server.feed_secret, "beta")),
        "unknown-tenant": server.feed_url("gamma"),
    }[creds]
    feed = Feed()
    # nats-py raises the server's -ERR on the first connect (no reconnect allowed).
    with pytest.raises(nats.errors.Error, match=AUTH_REFUSED):
        await feed.connect(url, "alpha")


async def test_added_tenant_works_after_reload_without_restart(server: EmbeddedNats, app: Any) -> None:
    pid = server.proc.pid  # type: ignore[union-attr]
    with pytest.raises(nats.errors.Error, match=AUTH_REFUSED):
        await Feed().connect(server.feed_url("gamma"), "gamma")
    try:
        assert server.set_tenants([*TENANTS, "gamma"]) is True
        assert server.set_tenants([*TENANTS, "gamma"]) is False  # nothing changed: no reload
        feed = await Feed().connect(server.feed_url("gamma"), "gamma")
        try:
            ack = await feed.nc.jetstream().publish("tele.gamma.CMP-0001", b"{}", timeout=5)
            assert ack.stream == "TELEMETRY"
            with pytest.raises(nats.errors.TimeoutError):
                await feed.nc.jetstream().publish("tele.alpha.CMP-0001", b"{}", timeout=ACK_WAIT)
        finally:
            await feed.nc.close()
        assert server.proc.pid == pid and server.proc.poll() is None  # type: ignore[union-attr]
        assert app.is_connected  # the app's connection rode through the reload
    finally:
        server.set_tenants(TENANTS)


async def test_removed_tenant_is_revoked_at_once(server: EmbeddedNats, app: Any) -> None:
    server.set_tenants([*TENANTS, "delta"])
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    feed = await Feed().connect(server.feed_url("delta"), "delta", closed_cb=on_closed)
    await feed.nc.jetstream().publish("tele.delta.PJ-0001", b"{}", timeout=5)
    server.set_tenants(TENANTS)
    await asyncio.wait_for(closed.wait(), 5)  # the server dropped the live connection
    with pytest.raises(nats.errors.Error, match=AUTH_REFUSED):
        await Feed().connect(server.feed_url("delta"), "delta")
    assert app.is_connected


async def test_simulator_runs_with_feed_credentials(server: EmbeddedNats, app: Any) -> None:
    """``wellpulse simulate --nats <feed url>``: publishes and takes simctl requests, nothing refused."""
    from sim import run_simulation

    task = asyncio.create_task(run_simulation(server.feed_url("beta"), "beta", equipment=2, rate=50, duration=1.5,
                                              fault_every=None))
    reply = None
    for _ in range(40):
        await asyncio.sleep(0.1)
        try:
            reply = await app.request(simctl_subject("beta"), json.dumps(
                {"equipment_id": "PJ-0001", "kind": "spike"}).encode(), timeout=0.3)
            break
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            continue
    stats = await asyncio.wait_for(task, 20)
    assert stats.acked == stats.messages > 0 and stats.publish_errors == 0
    assert reply is not None and json.loads(reply.data) == {"ok": True}


# --- config text and credentials (no server) --------------------------------------------------------

@pytest.mark.parametrize("bad", ["a.b", "a*", "a>", ">", "*", "a b", "a\tb", "a\nb", "", "A", 'a"', "a}",
                                 "-a", "a" * 64])
def test_bad_tenant_ids_never_reach_the_config(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        nats_auth.authorization_block("app", "pw", "secret", ["ok", bad])
    with pytest.raises(InvalidIdentifier):
        nats_auth.feed_user(bad)
    with pytest.raises(InvalidIdentifier):
        EmbeddedNats(tmp_path, tenants=[bad])
    nats_server = EmbeddedNats(tmp_path / "n", tenants=["ok"])
    nats_server._write_config()
    before = (tmp_path / "n" / "nats-server.conf").read_text()
    with pytest.raises(InvalidIdentifier):
        nats_server.set_tenants(["ok", bad])
    assert (tmp_path / "n" / "nats-server.conf").read_text() == before
    assert nats_server.tenants == {"ok"}


def test_app_credentials_with_quotes_or_spaces_are_refused() -> None:
    for user, password in [('a"b', "pw"), ("app", 'p"w'), ("app", "p w"), ("app", "p\\w"), ("", "pw")]:
        with pytest.raises(ValueError):
            nats_auth.authorization_block(user, password, "secret", [])


def test_feed_passwords_are_stable_per_tenant_and_secret() -> None:
    assert nats_auth.feed_password("s", "alpha") == nats_auth.feed_password("s", "alpha")
    assert nats_auth.feed_password("s", "alpha") != nats_auth.feed_password("s", "beta")
    assert nats_auth.feed_password("s", "alpha") != nats_auth.feed_password("t", "alpha")
    assert len(nats_auth.feed_password("s", "alpha")) == 43  # 256 bits, base64url without padding


def test_feed_subscribe_permissions_match_the_simulator() -> None:
    assert simctl_subject("alpha") in nats_auth.feed_permissions("alpha")["subscribe"]["allow"]  # type: ignore[index]


def test_secrets_and_config_files_are_private(server: EmbeddedNats) -> None:
    for name in (nats_auth.APP_PASSWORD_FILE, nats_auth.FEED_SECRET_FILE, "nats-server.conf"):
        assert (server.data_dir / name).stat().st_mode & 0o077 == 0, name
    assert EmbeddedNats(server.data_dir).app_password == server.app_password  # made once, then kept


def test_configured_feed_secret_wins(tmp_path: Path) -> None:
    nats_server = EmbeddedNats(tmp_path, feed_secret="from-env")
    assert nats_server.feed_url("alpha").startswith(
        f"nats://feed-alpha:{nats_auth.feed_password('from-env', 'alpha')}@127.0.0.1:")
    assert not (tmp_path / nats_auth.FEED_SECRET_FILE).exists()


def test_redact_url_hides_passwords_only() -> None:
    assert nats_auth.redact_url("nats://u:p%40ss@h:4222") == "nats://u:***@h:4222"
    assert nats_auth.redact_url("nats://h:4222") == "nats://h:4222"
    assert nats_auth.redact_url("nats://tok@h:4222") == "nats://tok@h:4222"  # a bare user is not a secret here
    assert nats_auth.redact_url(None) == "None"
    assert "s3cret" not in nats_auth.redact_url("nats://a:s3cret@[::1]:4222,tls://b:s3cret@h2")


# --- the CLI ------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    """``wellpulse nats ...`` (the sub-commands as cli wires them)."""
    from cli.nats import add_nats_commands

    parser = argparse.ArgumentParser(prog="wellpulse")
    add_nats_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _write_runtime(data_dir: Path, nats_url: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "runtime.json").write_text(json.dumps({"pid": os.getpid(), "nats_url": nats_url,
                                                        "database_url": None}))


async def test_cli_prints_feed_credentials_that_work(
    server: EmbeddedNats, app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("WELLPULSE_NATS_URL", raising=False)
    monkeypatch.delenv("WELLPULSE_DATABASE_URL", raising=False)
    monkeypatch.setenv("WELLPULSE_NATS_FEED_SECRET", server.feed_secret)
    _write_runtime(tmp_path, server.url)  # as a running `wellpulse up` leaves it
    assert main(["nats", "feed-credentials", "alpha", "--data-dir", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["user"] == "feed-alpha" and info["publish"] == "tele.alpha.>"
    assert server.app_password not in info["url"]  # the app's credentials are not handed out
    assert info["mqtt_url"] == f"mqtt://feed-alpha:{info['password']}@127.0.0.1:1883"
    feed = await Feed().connect(info["url"], None, inbox_prefix=info["inbox_prefix"])
    try:
        assert (await feed.nc.jetstream().publish("tele.alpha.PJ-0003", b"{}", timeout=5)).stream == "TELEMETRY"
    finally:
        await feed.nc.close()

    assert main(["nats", "feed-credentials", "alpha", "--data-dir", str(tmp_path)]) == 0
    assert info["password"] in capsys.readouterr().out
    assert main(["nats", "feed-credentials", "no.dots", "--data-dir", str(tmp_path)]) == 2


def test_cli_prints_the_authorization_block(
    server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("WELLPULSE_NATS_URL", "nats://wellpulse-app:app-pw@nats.example:4222")
    monkeypatch.setenv("WELLPULSE_NATS_FEED_SECRET", "k")
    assert main(["nats", "config", "--tenant", "alpha", "--tenant", "beta", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    auth_block = nats_auth.authorization_block("wellpulse-app", "app-pw", "k", ["alpha", "beta"])
    assert out == auth_block + nats_auth.server_name_line("wellpulse") + nats_auth.mqtt_block(1883)
    assert main(["nats", "config", "--tenant", "alpha", "--no-mqtt", "--data-dir", str(tmp_path)]) == 0
    assert "mqtt" not in capsys.readouterr().out
    assert main(["nats", "config", "--tenant", "a>b", "--data-dir", str(tmp_path)]) == 2


def test_runtime_file_of_a_dead_process_is_ignored(tmp_path: Path) -> None:
    from serve.runtime import load_runtime_urls

    assert load_runtime_urls(tmp_path) == {}
    _write_runtime(tmp_path, "nats://x")
    assert load_runtime_urls(tmp_path)["nats_url"] == "nats://x"
    (tmp_path / "runtime.json").write_text(json.dumps({"pid": 2**22 + 12345, "nats_url": "nats://x"}))
    assert load_runtime_urls(tmp_path) == {}


# --- the running stack keeps the feed users in step with the tenants table ------------------------------

def test_stack_syncs_feed_users_with_active_tenants(database_url: str, tmp_path: Path) -> None:
    import uuid

    import psycopg

    from config import Settings
    from serve.runtime import Stack, load_runtime_urls
    from store.migrate import migrate

    migrate(database_url)
    live, inactive, deleted = (f"n-{uuid.uuid4().hex[:8]}" for _ in range(3))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, 'x')", (live,))
        conn.execute("INSERT INTO tenants (id, name, active) VALUES (%s, 'x', false)", (inactive,))
        conn.execute("INSERT INTO tenants (id, name, deleted_at) VALUES (%s, 'x', now())", (deleted,))
    nats_server = EmbeddedNats(tmp_path / "nats").start()
    stack = Stack(Settings(database_url=database_url, nats_url=nats_server.url, data_dir=tmp_path))  # type: ignore[call-arg]
    stack.nats = nats_server  # as start_servers does when it starts the embedded NATS

    async def can_publish(tenant: str) -> bool:
        # Other tests' tenants come and go in the shared database, so the sync may reload the server at any
        # moment; a reload can reset a connection being made, which says nothing about the credentials.
        for _ in range(20):
            try:
                feed = await Feed().connect(nats_server.feed_url(tenant), tenant)
            except nats.errors.Error:
                return False
            except OSError:
                await asyncio.sleep(0.1)
                continue
            await feed.nc.close()
            return True
        raise AssertionError("every connection was reset")

    try:
        stack._start_nats_sync()  # one sync at once, then every 2 s
        assert live in nats_server.tenants and not {inactive, deleted} & nats_server.tenants
        assert asyncio.run(can_publish(live)) and not asyncio.run(can_publish(inactive))
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE tenants SET active = false WHERE id = %s", (live,))
            conn.execute("UPDATE tenants SET active = true WHERE id = %s", (inactive,))
        for _ in range(600):  # a sync every 2 s, a reload each; generous for a loaded 2-core machine
            if inactive in nats_server.tenants and live not in nats_server.tenants:
                break
            time.sleep(0.1)
        for _ in range(20):  # the reload is applied asynchronously by the server
            if asyncio.run(can_publish(inactive)) and not asyncio.run(can_publish(live)):
                break
            time.sleep(0.5)
        assert asyncio.run(can_publish(inactive)) and not asyncio.run(can_publish(live))

        stack._write_runtime_file()
        assert (tmp_path / "runtime.json").stat().st_mode & 0o077 == 0
        assert load_runtime_urls(tmp_path)["nats_url"] == nats_server.url
        stack._remove_runtime_file()
        assert load_runtime_urls(tmp_path) == {}
    finally:
        stack._stop_nats_sync()
        nats_server.stop()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM tenants WHERE id = ANY(%s)", ([live, inactive, deleted],))


def test_wellpulse_cli_has_the_nats_commands() -> None:
    from cli import build_parser

    args = build_parser().parse_args(["nats", "feed-credentials", "alpha", "--url"])
    assert args.func.__name__ == "feed_credentials_command" and args.url
    assert build_parser().parse_args(["nats", "config", "--tenant", "a"]).func.__name__ == "config_command"
