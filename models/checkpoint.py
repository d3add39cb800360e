"""What a model checkpoint is: the registry of stable tags for every class a model holds, and the bytes.

`CODEC` (a `models.state.StateCodec`) maps each tag to the current class. Tags are written into every stored
checkpoint: never change one. Renaming or moving a class changes its line here and nothing stored; a new class a
model holds needs a line here (encoding a model that holds an unregistered one raises `StateError`, and the
round-trip tests of every equipment type fail first).

River's objects are registered too: the trees of ``HalfSpaceTrees`` and the steps of a ``Pipeline`` by explicit
hooks (their attributes hold caches and shared nodes, and River's internals may change between releases), the
small ones (optimizers, losses, the scaler) by their attributes.

Migration from pickles: `loads` still reads a checkpoint written as a pickle by versions before this format
(`is_pickle`; only ever called on bytes `config.secrets.verify_blob` accepted). The actor re-writes such a model
at its next checkpoint, so the pickle reader can go once no stored checkpoint is a pickle (see
``docs/architecture.md``).
"""

from __future__ import annotations

import pickle
from typing import Any, TypeVar

from river import anomaly, compose, linear_model, optim, preprocessing, utils
from river.tree.padded import PaddedBranch, PaddedLeaf

from models.alerts import AlertStateMachine
from models.detectors import (
    EquipmentAnomalyScorer,
    EWStats,
    LevelNovelty,
    SeasonalProfile,
    SensorAnomalyDetector,
    SnapshotAnomalyDetector,
    TailCalibration,
)
from models.drift import LevelDriftDetector, SensorDriftDetector
from models.equipment import EquipmentState
from models.failure import FailurePredictor, _clip_features
from models.rules import (
    AnomalyRule,
    FailureRiskRule,
    RateOfChangeRule,
    StaleDataRule,
    StuckSensorRule,
    ThresholdRule,
)
from models.state import StateCodec, StateError

__all__ = ["CODEC", "StateError", "dumps", "is_pickle", "loads"]

T = TypeVar("T")

# -- River: explicit hooks --------------------------------------------------------------------------------

_LEAF = frozenset({"l_mass", "r_mass"})
_BRANCH = frozenset({"children", "feature", "threshold", "l_mass", "r_mass"})


def _tree(node: Any) -> list[Any]:
    """A padded tree as nested lists: ``[feature, threshold, l_mass, r_mass, left, right]`` per branch,
    ``[l_mass, r_mass]`` per leaf (thousands of nodes per equipment: no tags, no attribute names)."""
    names = vars(node).keys()
    if isinstance(node, PaddedBranch) and names == _BRANCH:
        left, right = node.children
        return [node.feature, node.threshold, node.l_mass, node.r_mass, _tree(left), _tree(right)]
    if isinstance(node, PaddedLeaf) and names == _LEAF:  # River sets a leaf's attributes from **kwargs
        masses = vars(node)
        return [masses["l_mass"], masses["r_mass"]]
    raise StateError(f"a half-space tree node {type(node).__name__} with {sorted(names)}: update models/checkpoint.py")


def _untree(spec: list[Any]) -> Any:
    if len(spec) == 2:
        return PaddedLeaf(l_mass=spec[0], r_mass=spec[1])
    feature, threshold, l_mass, r_mass, left, right = spec
    return PaddedBranch(_untree(left), _untree(right), feature, threshold, l_mass, r_mass)


def _dump_hst(h: anomaly.HalfSpaceTrees) -> dict[str, Any]:
    return {"n_trees": h.n_trees, "height": h.height, "window_size": h.window_size, "seed": h.seed,
            "limits": dict(h.limits), "rng": h.rng, "counter": h.counter, "first_window": h._first_window,
            "trees": [_tree(t) for t in h.trees]}


def _load_hst(s: dict[str, Any]) -> anomaly.HalfSpaceTrees:
    h = anomaly.HalfSpaceTrees(n_trees=s["n_trees"], height=s["height"], window_size=s["window_size"],
                               limits=s["limits"], seed=s["seed"])
    h.rng = s["rng"]
    h.counter = s["counter"]
    h._first_window = s["first_window"]
    h.trees = [_untree(t) for t in s["trees"]]
    h._tree_nodes = [list(t.iter_dfs()) for t in h.trees]  # the same nodes, in the order River lists them
    return h


def _dump_pipeline(p: compose.Pipeline) -> dict[str, Any]:
    return {"steps": [[name, step] for name, step in p.steps.items()]}  # the rest is caches of the steps


def _load_pipeline(s: dict[str, Any]) -> compose.Pipeline:
    return compose.Pipeline(*[(name, step) for name, step in s["steps"]])


def _dump_vector(v: utils.VectorDict[Any, Any]) -> dict[str, Any]:
    data, default_factory, mask, _copy = v.__reduce__()[1]  # River's pickle contract
    if mask is not None:
        raise StateError("a masked VectorDict: update models/checkpoint.py")
    return {"data": data, "default_factory": default_factory}


def _load_vector(s: dict[str, Any]) -> utils.VectorDict[Any, Any]:
    return utils.VectorDict(s["data"], s["default_factory"])


# -- the registry: one line per class; the tags are stored, the classes may be renamed ------------------------

CODEC = StateCodec()
for _tag, _cls in (
    ("ew_stats", EWStats),
    ("sensor_anomaly_detector", SensorAnomalyDetector),
    ("snapshot_anomaly_detector", SnapshotAnomalyDetector),
    ("seasonal_profile", SeasonalProfile),
    ("level_novelty", LevelNovelty),
    ("tail_calibration", TailCalibration),
    ("equipment_anomaly_scorer", EquipmentAnomalyScorer),
    ("sensor_drift_detector", SensorDriftDetector),
    ("level_drift_detector", LevelDriftDetector),
    ("failure_predictor", FailurePredictor),
    ("rule.anomaly", AnomalyRule),
    ("rule.stale_data", StaleDataRule),
    ("rule.stuck_sensor", StuckSensorRule),
    ("rule.failure_risk", FailureRiskRule),
    ("river.standard_scaler", preprocessing.StandardScaler),
    ("river.logistic_regression", linear_model.LogisticRegression),
    ("river.sgd", optim.SGD),
    ("river.zeros_initializer", optim.initializers.Zeros),
    ("river.log_loss", optim.losses.Log),
):
    CODEC.register(_tag, _cls)
CODEC.register("equipment_state", EquipmentState, new=lambda: EquipmentState("default", "other", []))
CODEC.register("alert_state_machine", AlertStateMachine, new=lambda: AlertStateMachine("default"))
CODEC.register("rule.threshold", ThresholdRule, new=lambda: ThresholdRule("default", "default", high=0.0))
CODEC.register("rule.rate_of_change", RateOfChangeRule, new=lambda: RateOfChangeRule("default", "default", 1.0))
CODEC.register("river.constant_schedule", optim.schedulers.Constant, new=lambda: optim.schedulers.Constant(0.01))
CODEC.register("river.func_transformer", compose.FuncTransformer,
               new=lambda: compose.FuncTransformer(_clip_features))
CODEC.register("river.half_space_trees", anomaly.HalfSpaceTrees, dump=_dump_hst, load=_load_hst)
CODEC.register("river.pipeline", compose.Pipeline, dump=_dump_pipeline, load=_load_pipeline)
CODEC.register("river.vector_dict", utils.VectorDict, dump=_dump_vector, load=_load_vector)
CODEC.register_function("failure.clip_features", _clip_features)


# -- bytes ---------------------------------------------------------------------------------------------------

_PICKLE = b"\x80"  # every pickle of protocol 2 or later starts with PROTO


def dumps(obj: Any) -> bytes:
    """The checkpoint of a registered object (compressed JSON, `models.state`); the same state, the same bytes."""
    return CODEC.dumps(obj)


def is_pickle(data: bytes) -> bool:
    """Whether `data` is a checkpoint of the format before this one (a pickle), to be re-written."""
    return data[:1] == _PICKLE


def loads(data: bytes, expect: type[T]) -> T:
    """The `expect` a checkpoint holds, from a state document or (migration) a pickle of an older version.

    Raises `StateError` (a `ValueError`) when this version cannot read it: unknown type tag, newer format,
    malformed, or a pickle naming a class that is gone.
    """
    if not is_pickle(data):
        return CODEC.loads(data, expect)  # type: ignore[no-any-return]  # checked by `expect`
    try:
        obj = pickle.loads(data)  # noqa: S301  only bytes signed by this installation (config.secrets.verify_blob)
    except Exception as exc:  # a class it names is gone, or the bytes are cut: the same refusal as a document's
        raise StateError(f"old pickle checkpoint unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, expect):
        raise StateError(f"checkpoint holds a {type(obj).__name__}, not a {expect.__name__}")
    return obj
