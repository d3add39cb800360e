"""bench.alert_quality on a small deterministic run (pure: no servers): its JSON shape, and figures computed
from the simulator's ground truth, not written in."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from bench import alert_quality as aq


def small_args(**overrides: object) -> argparse.Namespace:
    args = {"per_type": 2, "hours": 3.0, "warmup_hours": 2.0, "poll_seconds": 30.0, "faults_per_kind": 1,
            "grace_minutes": 30.0, "seed": 5, "workers": 1}
    args.update(overrides)
    return argparse.Namespace(**args)


def test_small_run_has_the_promised_shape_and_is_deterministic() -> None:
    result = aq.run_pure(small_args())
    assert set(result["overall"]) >= {"precision", "recall", "alerts_per_healthy_equipment_day"}
    assert result["setup"]["equipment"] == 10 and result["setup"]["grace_minutes"] == 30.0
    kinds = {k.value for k in aq.KINDS}
    assert set(result["per_kind"]) == kinds == set(result["baseline"]["per_kind"])
    for figures in result["per_kind"].values():
        assert {"precision", "recall", "median_minutes_to_detect", "faults", "detected"} <= set(figures)
    again = aq.run_pure(small_args())
    assert again["overall"] == result["overall"] and again["_truth"] == result["_truth"]


def test_figures_come_from_the_truth_and_the_openings() -> None:
    result = aq.run_pure(small_args())
    truth, openings = result["_truth"], result["_openings"]
    # The ground truth is what the simulator recorded: one record per planned fault, inside the measured time.
    assert len(truth) == result["overall"]["faults"] == len(aq.KINDS)
    measured_from = aq.START + timedelta(hours=2)
    assert all(datetime.fromisoformat(r["start"]) >= measured_from for r in truth)
    # Re-scoring the same openings against a truth with one fault removed changes the recall accordingly.
    fleet = aq.fleet_of(2)
    common = {"measured_from": measured_from, "measured_to": measured_from + timedelta(hours=3),
              "grace": timedelta(minutes=30), "poll_s": 30.0}
    full = aq.score(openings, truth, fleet, system="default", **common)
    assert full["overall"] == result["overall"]
    detected = full["overall"]["faults_detected"]
    fewer = aq.score(openings, truth[1:], fleet, system="default", **common)
    assert fewer["overall"]["faults"] == len(truth) - 1
    assert fewer["overall"]["faults_detected"] in (detected, detected - 1)
    # No truth at all: every counted opening is a false one, and all equipment is healthy.
    none = aq.score(openings, [], fleet, system="default", **common)
    assert none["overall"]["openings_matched"] == 0 and none["overall"]["healthy_equipment"] == len(fleet)
    assert none["overall"]["openings_on_healthy_equipment"] == none["overall"]["openings"]


def test_an_opening_matches_only_its_equipment_sensor_and_window() -> None:
    fleet = aq.fleet_of(1)
    start = aq.START + timedelta(hours=1)
    truth = [{"kind": "drift", "equipment_id": "CMP-0001", "sensors": ["vibration_mm_s"], "sensor": "vibration_mm_s",
              "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(), "magnitude_sigma": 4.0}]

    def opening(eid: str, rule: str, minutes: float, sensors: list[str]) -> dict:
        return {"system": "default", "equipment_id": eid, "rule_id": rule, "sensors": sensors,
                "ts": (start + timedelta(minutes=minutes)).isoformat()}

    ops = [opening("CMP-0001", "drift_vibration_mm_s", 50, ["vibration_mm_s"]),  # match, 50 min
           opening("CMP-0001", "drift_discharge_psi", 55, ["discharge_psi"]),  # other sensor: false
           opening("CMP-0001", "anomaly", 85, []),  # equipment-level, inside the grace: match
           opening("CMP-0001", "anomaly", 95, []),  # after the grace: false
           opening("PJ-0001", "anomaly", 60, [])]  # healthy equipment: false
    r = aq.score(ops, truth, fleet, system="default", measured_from=aq.START, measured_to=aq.START + timedelta(days=1),
                 grace=timedelta(minutes=30), poll_s=10.0)
    assert r["overall"]["openings_matched"] == 2 and r["overall"]["openings"] == 5
    assert r["overall"]["precision"] == 0.4 and r["overall"]["recall"] == 1.0
    assert r["per_kind"]["drift"]["median_minutes_to_detect"] == 50.0
    assert r["per_kind"]["drift"]["precision"] == 0.5
    assert r["overall"]["openings_on_healthy_equipment"] == 1
    assert r["overall"]["alerts_per_healthy_equipment_day"] == round(1 / (len(fleet) - 1), 3)
    assert r["overall"]["drifts_3_sigma_or_more_detected_within_2h"] == "1/1"
