"""Backups: ``wellpulse backup`` / ``wellpulse restore`` round trips on a real PostgreSQL (no Ray, no NATS)."""

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cli import main
from store.backup import BackupError, backup_database, restore_database, table_digests
from store.migrate import migrate
from tests.conftest import _drop_database, _fresh_database


@pytest.fixture
def two_databases(pg_server: str) -> Iterator[tuple[str, str]]:
    made = [_fresh_database(pg_server) for _ in range(2)]
    try:
        yield made[0][0], made[1][0]
    finally:
        for _, name in made:
            _drop_database(pg_server, name)


def _fill(url: str) -> None:
    migrate(url, app_password=os.environ["WELLPULSE_APP_DB_PASSWORD"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (id, name) VALUES ('acme', 'Acme'), ('bravo', 'Bravo')")
        conn.execute("INSERT INTO equipment (tenant_id, id, type) VALUES ('acme', 'PJ-1', 'pump_jack'),"
                     " ('bravo', 'CMP-1', 'compressor')")
        conn.execute(
            "INSERT INTO readings (tenant_id, equipment_id, sensor, ts, value)"
            " SELECT t, e, 'pressure', timestamptz '2026-12-01' + i * interval '1 minute', i * 0.5"
            " FROM (VALUES ('acme', 'PJ-1'), ('bravo', 'CMP-1')) AS x(t, e), generate_series(1, 500) AS i")
        conn.execute("INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, details,"
                     " opened_at) VALUES ('acme', 'PJ-1', 'anomaly', 'open', 'warning', 'm', '{}', now())")


def test_backup_restores_into_a_fresh_database_row_for_row(two_databases: tuple[str, str], tmp_path: Path) -> None:
    source, target = two_databases
    _fill(source)
    out = tmp_path / "wellpulse.dump"
    assert main(["backup", "--database-url", source, "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and not out.with_name(out.name + ".partial").exists()
    assert main(["restore", "--database-url", target, str(out)]) == 0
    before, after = table_digests(source), table_digests(target)
    assert before == after
    assert before["readings"].rows == 1_000 and before["alerts"].rows == 1
    # The app role can work in the restored database (its grants are given again after the restore).
    with psycopg.connect(target, autocommit=True) as conn:
        role = conn.execute("SELECT has_table_privilege('wellpulse_app', 'readings', 'INSERT')").fetchone()
    assert role == (True,)


def test_restore_replaces_what_changed_since_the_backup(two_databases: tuple[str, str], tmp_path: Path) -> None:
    source, _ = two_databases
    _fill(source)
    out = tmp_path / "b.dump"
    backup_database(source, out)
    taken = table_digests(source)
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("DELETE FROM readings WHERE tenant_id = 'bravo'")
        conn.execute("UPDATE alerts SET state = 'resolved', resolved_at = now()")
    assert table_digests(source) != taken
    restore_database(source, out)
    assert table_digests(source) == taken


def test_a_file_that_is_not_a_backup_changes_nothing(two_databases: tuple[str, str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    source, _ = two_databases
    _fill(source)
    taken = table_digests(source)
    junk = tmp_path / "junk.dump"
    junk.write_bytes(b"not a dump at all")
    with pytest.raises(BackupError, match="pg_restore failed"):
        restore_database(source, junk)
    assert main(["restore", "--database-url", source, str(junk)]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["restore", "--database-url", source, str(tmp_path / "missing.dump")]) == 2
    assert table_digests(source) == taken


def test_backup_of_the_embedded_server_of_a_data_dir(tmp_path: Path) -> None:
    """No URL anywhere: the command starts the data dir's embedded server for itself, and stops it."""
    from store.embedded import EmbeddedPostgres

    data_dir = tmp_path / "wp"
    server = EmbeddedPostgres(data_dir / "postgres").start()
    try:
        _fill(server.url)
        taken = table_digests(server.url)
    finally:
        server.stop()
    out = tmp_path / "embedded.dump"
    env = {k: os.environ.pop(k) for k in list(os.environ) if k in ("WELLPULSE_DATABASE_URL",)}
    try:
        assert main(["backup", "--data-dir", str(data_dir), "--out", str(out)]) == 0
        assert main(["restore", "--data-dir", str(data_dir), str(out)]) == 0
    finally:
        os.environ.update(env)
    server = EmbeddedPostgres(data_dir / "postgres").start()
    try:
        assert table_digests(server.url) == taken
    finally:
        server.stop()
