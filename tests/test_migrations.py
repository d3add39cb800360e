"""Migration files: one number each, applied in the order they always were; a database that recorded the old
names migrates to the new ones without applying anything again (real PostgreSQL, no Ray, no NATS)."""

import json
import os
import re
import shutil
from pathlib import Path

import psycopg
import pytest

from cli import main
from store import migrate as migrations
from store.backup import backup_database
from store.migrate import RENAMED_MIGRATIONS, SQL_DIR, MigrationResult, migrate
from tests.conftest import _database_on

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

APP_PASSWORD = os.environ["WELLPULSE_APP_DB_PASSWORD"]


def _recorded(url: str) -> dict[str, object]:
    with psycopg.connect(url, autocommit=True) as conn:
        return dict(conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall())


def test_every_migration_has_a_number_of_its_own() -> None:
    names = sorted(p.name for p in SQL_DIR.glob("*.sql"))
    numbers = [re.match(r"(\d{3})_", name) for name in names]
    assert all(numbers), names
    assert len({m.group(1) for m in numbers if m}) == len(names), names


def test_renumbering_kept_the_order_of_application() -> None:
    new_names = sorted(p.name for p in SQL_DIR.glob("*.sql"))
    old_of = {new: old for old, new in RENAMED_MIGRATIONS.items()}
    assert set(old_of) <= set(new_names), "every renamed file exists under its new name"
    assert not set(RENAMED_MIGRATIONS) & set(new_names), "no old name is a file's name now"
    old_names = [old_of.get(name, name) for name in new_names]
    assert old_names == sorted(old_names)


def _migrate_under_old_names(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MigrationResult:
    """Migrate `url` as this runner did before the files were renumbered (the same files, the old names)."""
    old_dir = tmp_path / "sql"
    old_dir.mkdir()
    old_of = {new: old for old, new in RENAMED_MIGRATIONS.items()}
    for path in SQL_DIR.glob("*.sql"):
        shutil.copy(path, old_dir / old_of.get(path.name, path.name))
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "SQL_DIR", old_dir)
        result = migrate(url, app_password=APP_PASSWORD)
    assert "013_hardening.sql" in result.applied and "006_readings_hourly.sql" in result.applied
    return result


def _current_names(flavour: str) -> list[str]:
    return sorted(p.name for p in SQL_DIR.glob("*.sql")
                  if not p.name.endswith(".timescale.sql") or flavour == migrations.TIMESCALE)


def test_a_database_migrated_under_the_old_names_applies_nothing_again(
        fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _migrate_under_old_names(fresh_database, tmp_path, monkeypatch)
    recorded_before = _recorded(fresh_database)

    after = migrate(fresh_database, app_password=APP_PASSWORD)

    assert after.applied == []
    recorded_after = _recorded(fresh_database)
    assert sorted(recorded_after) == _current_names(before.flavour)
    # Renamed, not recorded again: each keeps the time it was applied.
    assert {RENAMED_MIGRATIONS.get(old, old): at for old, at in recorded_before.items()} == recorded_after
    assert migrate(fresh_database, app_password=APP_PASSWORD).applied == []


def test_a_backup_taken_under_the_old_names_restores_without_applying_anything_again(
        pg_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    with _database_on(pg_server) as source, _database_on(pg_server) as target:
        before = _migrate_under_old_names(source, tmp_path, monkeypatch)
        dump = tmp_path / "old-names.dump"
        backup_database(source, dump)
        capsys.readouterr()
        assert main(["restore", "--database-url", target, str(dump)]) == 0  # restores, then migrates
        assert json.loads(capsys.readouterr().out)["migrations_applied"] == []
        assert sorted(_recorded(target)) == _current_names(before.flavour)


def test_both_names_recorded_keep_the_new_one(fresh_database: str) -> None:
    migrate(fresh_database, app_password=APP_PASSWORD)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES ('013_hardening.sql')")
    assert migrate(fresh_database, app_password=APP_PASSWORD).applied == []
    recorded = _recorded(fresh_database)
    assert "015_hardening.sql" in recorded and "013_hardening.sql" not in recorded
