"""One definition of the rules an equipment runs: the actor, the backtest API and the backtest CLI build them
through `models.rules_for_equipment` and so raise the same alerts on the same readings (pure, no IO)."""

import json
import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors.equipment import build_rules
from cli.backtest import BacktestError, load_rules
from models import AnomalyRule, EquipmentState, Rule, Snapshot, rules_for_equipment
from schema.predictions import BacktestRequest
from serve.predictions import _rules as backtest_api_rules

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
EQUIPMENT_ID, EQUIPMENT_TYPE, SENSITIVITY = "PJ-7", "pump_jack", "high"


def _row(rule_id: str, kind: str, params: dict[str, Any], *, equipment_id: str | None = None,
         equipment_type: str | None = None) -> dict[str, Any]:
    """A rule as `store.rules.list_rules` returns it (the severity column already in params)."""
    return {"id": rule_id, "kind": kind, "params": params, "equipment_id": equipment_id,
            "equipment_type": equipment_type}


# The tenant's rules: three apply to PJ-7 (one overrides the default anomaly rule and sets no sensitivity of its
# own), two are for other equipment.
APPLYING = [
    _row("tubing_hot", "threshold", {"sensor": "tubing_psi", "high": 1100, "for_seconds": 10, "severity": "critical"},
         equipment_type=EQUIPMENT_TYPE),
    _row("anomaly", "anomaly", {"severity": "critical"}, equipment_id=EQUIPMENT_ID),
    _row("casing_low", "threshold", {"sensor": "casing_psi", "low": 100}),
]
ROWS = [
    *APPLYING,
    _row("vibration_high", "threshold", {"sensor": "vibration_mm_s", "high": 9}, equipment_type="compressor"),
    _row("pj8_tubing", "threshold", {"sensor": "tubing_psi", "high": 700}, equipment_id="PJ-8"),
]


def _readings() -> list[Snapshot]:
    """Ten minutes of a normal pump jack, a minute of tubing pressure far too high, then normal again."""
    rng = random.Random(7)
    snapshots = []
    for i in range(900):
        tubing = 1400.0 if 600 <= i < 660 else rng.gauss(800.0, 15.0)
        snapshots.append(Snapshot(T0 + timedelta(seconds=i), {
            "motor_current_a": rng.gauss(42.0, 1.0), "polished_rod_load_lbf": rng.gauss(15_000.0, 300.0),
            "strokes_per_minute": rng.gauss(9.0, 0.1), "tubing_psi": tubing, "casing_psi": rng.gauss(275.0, 5.0)}))
    return snapshots


def _actor_rules() -> list[Rule]:
    return build_rules(EQUIPMENT_ID, EQUIPMENT_TYPE, ROWS, SENSITIVITY)


def _backtest_file_rules(tmp_path: Path) -> list[Rule]:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{k: r[k] for k in ("id", "kind", "params")} for r in APPLYING]))
    return load_rules(path, EQUIPMENT_TYPE, SENSITIVITY)


def _backtest_api_rules() -> list[Rule]:
    request = BacktestRequest(start=T0, end=T0 + timedelta(days=1), sensitivity=SENSITIVITY)
    return backtest_api_rules(EQUIPMENT_ID, EQUIPMENT_TYPE, ROWS, request)


def test_actor_and_backtests_run_the_same_rules_and_raise_the_same_alerts(tmp_path: Path) -> None:
    actor, cli, api = _actor_rules(), _backtest_file_rules(tmp_path), _backtest_api_rules()
    assert [repr(r) for r in actor] == [repr(r) for r in cli] == [repr(r) for r in api]
    ids = [r.rule_id for r in actor]
    assert {"tubing_hot", "casing_low"} <= set(ids) and not {"vibration_high", "pj8_tubing"} & set(ids)

    snapshots = _readings()
    # As each builds its entity: the actor with the equipment's rules, the backtests with the sensitivity too.
    in_actor = EquipmentState(EQUIPMENT_ID, EQUIPMENT_TYPE, actor, seed=0).learn_many(snapshots)
    in_cli = EquipmentState(EQUIPMENT_ID, EQUIPMENT_TYPE, cli, seed=0, sensitivity=SENSITIVITY).learn_many(snapshots)
    in_api = EquipmentState(EQUIPMENT_ID, EQUIPMENT_TYPE, api, seed=0, sensitivity=SENSITIVITY).learn_many(snapshots)
    assert in_actor == in_cli == in_api
    opened = {c.rule_id for c in in_actor if c.kind == "opened"}
    assert {"tubing_hot", "tubing_psi_high"} <= opened


def test_a_tenant_anomaly_rule_takes_the_equipment_sensitivity_unless_it_sets_one() -> None:
    anomaly = next(r for r in _actor_rules() if r.rule_id == "anomaly")
    assert isinstance(anomaly, AnomalyRule) and (anomaly.sensitivity, anomaly.severity) == ("high", "critical")
    own = _row("anomaly", "anomaly", {"sensitivity": "low"})
    anomaly = next(r for r in build_rules(EQUIPMENT_ID, EQUIPMENT_TYPE, [own], SENSITIVITY) if r.rule_id == "anomaly")
    assert isinstance(anomaly, AnomalyRule) and anomaly.sensitivity == "low"


def test_a_bad_rule_is_skipped_by_the_actor_and_refused_by_the_backtest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = _row("broken", "threshold", {"sensor": "tubing_psi", "hgih": 1})
    with caplog.at_level(logging.WARNING, logger="actors.equipment"):
        rules = build_rules(EQUIPMENT_ID, EQUIPMENT_TYPE, [*ROWS, bad], SENSITIVITY)
    assert [repr(r) for r in rules] == [repr(r) for r in _actor_rules()]
    assert "rule broken ignored" in caplog.text

    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"id": "broken", "kind": "threshold", "params": bad["params"]}]))
    with pytest.raises(BacktestError, match="unknown parameter"):
        load_rules(path, EQUIPMENT_TYPE, SENSITIVITY)
    path.write_text(json.dumps([{"kind": "threshold"}]))
    with pytest.raises(BacktestError, match="rule #0 needs an id and a kind"):
        load_rules(path, EQUIPMENT_TYPE, SENSITIVITY)


def test_rules_for_equipment_reports_what_it_could_not_build() -> None:
    specs = [{"id": "ok", "kind": "stale_data", "params": {"max_silence_seconds": 5}},
             {"id": "nope", "kind": "magic", "params": {}}, "not a spec"]
    rules, rejected = rules_for_equipment("other", specs)
    assert "ok" in [r.rule_id for r in rules]
    assert [(r.index, r.rule_id) for r in rejected] == [(1, "nope"), (2, None)]
    assert "unknown rule kind 'magic'" in rejected[0].reason
