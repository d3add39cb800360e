"""A realistic SCADA feed simulator: the demo feed, the load generator and a fault injector in one.

Why it exists: the pipeline (ingest, detectors, alerts) has to be exercised end to end without real
field equipment, with data that looks like the field's: levels that sit inside their normal ranges,
follow a daily cycle, move together where physics couples them, change operating point when an operator
says so, stop and start (pump-off control), arrive late now and then, and break in the ways real feeds and
machines break (spikes, drifting and stuck sensors, comms outages, store-and-forward resends, and failure
precursors that develop over hours: a compressor's bearing wearing, a valve leaking).

Pure generation (no IO, deterministic for a seed), so the interesting part is testable without a server:

- `sim.fleet`: the equipment (:class:`EquipmentSpec`, :func:`demo_fleet`) and the reporting cadence.
- `sim.normal`: the physics of healthy equipment and the normal behaviour that is not a fault
  (:class:`NormalBehaviour`).
- `sim.faults`: what goes wrong (:class:`Fault`, :class:`FaultKind`, :class:`FaultSchedule`) and the record of it
  (:func:`truth_record`).
- `sim.feed`: :class:`FeedSimulator` turns a timestamp into message bodies (exactly the JSON the SCADA gateways
  send, see ``schema.telemetry``).

Publishing, `sim.publish`: :func:`run_simulation` paces the generator to a target readings-per-second and
publishes to JetStream ``tele.<tenant>.<equipment>`` with ``Nats-Msg-Id`` so resends dedup; ``simctl.<tenant>``
accepts faults on demand while it runs. The ``wellpulse simulate`` command is `cli.simulate`.

Ground truth: every fault the simulator injects (scheduled, given with ``--fault`` or sent on ``simctl``)
becomes one record (kind, equipment, sensor(s), start, end; see :meth:`FeedSimulator.drain_truth`), written
as a JSON line to ``--truth PATH`` and published on ``simctl.<tenant>.faults``, so alert quality can be
measured against what really happened (``python -m bench.alert_quality``). Operating changes, pump stops
and late data are normal behaviour, not faults: they are not in the truth.

>>> from datetime import UTC, datetime
>>> sim = FeedSimulator(demo_fleet(2), seed=1)
>>> [m["equipment_id"] for m in sim.next_snapshots(datetime(2026, 1, 1, tzinfo=UTC))]
['PJ-0001', 'CMP-0002']
"""

from sim.faults import PRECURSOR_FAULTS, Fault, FaultKind, FaultSchedule, fault_fits, parse_fault_spec, truth_record
from sim.feed import FeedSimulator, MessageBatcher, SimMessage
from sim.fleet import FLEET_MIX, EquipmentSpec, demo_fleet, format_ts, snapshot_interval
from sim.normal import NormalBehaviour
from sim.publish import DEFAULT_NATS_URL, SimulationStats, ensure_telemetry_stream, run_simulation

__all__ = [
    "DEFAULT_NATS_URL",
    "FLEET_MIX",
    "PRECURSOR_FAULTS",
    "EquipmentSpec",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "FeedSimulator",
    "MessageBatcher",
    "NormalBehaviour",
    "SimMessage",
    "SimulationStats",
    "demo_fleet",
    "ensure_telemetry_stream",
    "fault_fits",
    "format_ts",
    "parse_fault_spec",
    "run_simulation",
    "snapshot_interval",
    "truth_record",
]
