"""Failure prediction: probability that an equipment fails within a horizon, learned online from field events.

The features of an equipment are sampled every ``sample_every_seconds`` of reading time and kept as
pending examples. Labels come later, from the field:

- a failure reported at time ``tf`` labels every pending example in ``[tf - horizon, tf]`` as positive
  ("failed within the horizon") and they are learned at once;
- an example older than ``horizon + label_delay`` with no failure after it is learned as negative (the
  delay leaves time for field apps that sync days late);
- a maintenance window drops the examples taken inside it (the equipment was not in normal service).

The model is River's ``StandardScaler | clip | LogisticRegression`` whose intercept starts at the logit of
``prior``, so an equipment that has seen no label predicts the prior instead of 0.5. A new equipment can
start from the model shared by its type (`FailurePredictor.adopt`), and the examples labelled by one
equipment can be learned by that shared model too (`FailurePredictor.learn_examples`).

"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from river import compose, linear_model, optim, preprocessing

__all__ = ["DEFAULT_HORIZON_SECONDS", "Example", "FailurePredictor"]

DEFAULT_HORIZON_SECONDS = 7 * 86_400.0
Example = tuple[dict[str, float], bool]


FEATURE_CLIP = 5.0


def _clip_features(x: dict[str, float]) -> dict[str, float]:
    """Clip standardised features to ``± FEATURE_CLIP``: a value far outside what was learned (worn equipment
    seen for the first time) must not extrapolate the logistic regression to certainty."""
    c = FEATURE_CLIP
    return {k: (c if v > c else -c if v < -c else v) for k, v in x.items()}


class FailurePredictor:
    """Online probability of failure within ``horizon_seconds``, with delayed labels from field events.

    Parameters
    ----------
    horizon_seconds
        Horizon of the prediction (default 7 days).
    sample_every_seconds
        Reading time between two feature samples (pending examples).
    label_delay_seconds
        Extra time a pending example waits for a late failure report before it is learned as negative.
    prior
        Probability predicted before any label (the initial intercept is its logit).
    learning_rate
        SGD learning rate of the logistic regression (weights and intercept).
    l2
        L2 regularisation of the weights.
    max_pending
        Bound on the pending examples (the oldest are learned as negatives first).
    max_outbox
        Bound on the labelled examples kept for the model shared by the equipment type (`drain_outbox`).

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> fp = FailurePredictor(horizon_seconds=86_400, sample_every_seconds=3_600, label_delay_seconds=0)
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> round(fp.predict_proba_one({"vibration": 5.0}), 3)  # nothing learned: the prior
    0.01
    >>> for cycle in range(20):  # 10 healthy days, then 2 days of rising vibration, then a failure
    ...     for h in range(12 * 24):
    ...         ts = t0 + timedelta(days=12 * cycle, hours=h)
    ...         fp.observe(ts, {"vibration": 1.0 + max(0, h - 240) / 24})
    ...     examples = fp.record_failure(ts)
    >>> fp.failures_seen, len(examples)
    (20, 25)
    >>> p_healthy, p_worn = fp.predict_proba_one({"vibration": 1.0}), fp.predict_proba_one({"vibration": 2.5})
    >>> p_healthy < 0.1 < 0.5 < p_worn
    True
    >>> fp.record_failure(ts)  # the same report, delivered twice
    []
    >>> shared = FailurePredictor(horizon_seconds=86_400)  # the model shared by the equipment type
    >>> examples, failures = fp.drain_outbox()  # the newest 1,000 examples this equipment labelled
    >>> failures, sum(y for _, y in examples)
    (20, 100)
    >>> shared.learn_examples(examples)
    >>> shared.predict_proba_one({"vibration": 1.0}) < 0.1 < 0.5 < shared.predict_proba_one({"vibration": 2.5})
    True

    """

    def __init__(
        self,
        horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
        sample_every_seconds: float = 3_600.0,
        label_delay_seconds: float = 3 * 86_400.0,
        prior: float = 0.01,
        learning_rate: float = 0.05,
        l2: float = 1e-4,
        max_pending: int = 10_000,
        max_outbox: int = 1_000,
    ) -> None:
        if horizon_seconds <= 0 or sample_every_seconds <= 0 or label_delay_seconds < 0:
            raise ValueError("horizon_seconds and sample_every_seconds must be > 0, label_delay_seconds >= 0")
        if not 0.0 < prior < 1.0:
            raise ValueError(f"prior must be in (0, 1), got {prior}")
        self.horizon_seconds = horizon_seconds
        self.sample_every_seconds = sample_every_seconds
        self.label_delay_seconds = label_delay_seconds
        self.prior = prior
        self.learning_rate = learning_rate
        self.l2 = l2
        self.max_pending = max_pending
        self.max_outbox = max_outbox
        self.labels_seen = 0
        self.failures_seen = 0
        self.positives_seen = 0
        self.last_failure_ts: datetime | None = None
        self._model: compose.Pipeline | None = None
        self._pending: deque[tuple[datetime, dict[str, float]]] = deque()
        self._next_sample: datetime | None = None
        self._outbox: deque[Example] = deque(maxlen=max_outbox)
        self._failures: deque[datetime] = deque(maxlen=64)  # labelled failure times: a label is learned once
        self._unshared_failures = 0

    def _get_model(self) -> compose.Pipeline:
        if self._model is None:
            self._model = (
                preprocessing.StandardScaler()
                | compose.FuncTransformer(_clip_features)
                | linear_model.LogisticRegression(
                optimizer=optim.SGD(self.learning_rate),
                l2=self.l2,
                intercept_init=math.log(self.prior / (1.0 - self.prior)),
                    intercept_lr=self.learning_rate,
                )
            )
        return self._model

    @property
    def horizon(self) -> timedelta:
        """The horizon as a `timedelta`."""
        return timedelta(seconds=self.horizon_seconds)

    @property
    def pending(self) -> int:
        """Number of examples waiting for their label."""
        return len(self._pending)

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        """Probability in [0, 1] that an equipment with features `x` fails within the horizon."""
        clean = {k: v for k, v in x.items() if math.isfinite(v)}
        p = float(self._get_model().predict_proba_one(clean).get(True, 0.0))
        return 0.0 if not math.isfinite(p) else min(1.0, max(0.0, p))

    def due(self, ts: datetime) -> bool:
        """Whether a feature sample is due at reading time `ts` (cheap: one comparison)."""
        return self._next_sample is None or ts >= self._next_sample

    def observe(self, ts: datetime, x: Mapping[str, float]) -> None:
        """Keep the features `x` at `ts` as a pending example; learn the examples old enough to be negative."""
        self._next_sample = ts + timedelta(seconds=self.sample_every_seconds)
        self._pending.append((ts, {k: float(v) for k, v in x.items() if math.isfinite(v)}))
        limit = ts - timedelta(seconds=self.horizon_seconds + self.label_delay_seconds)
        pending = self._pending
        while pending and (pending[0][0] < limit or len(pending) > self.max_pending):
            _, old = pending.popleft()
            self.learn_one(old, False)
            self._outbox.append((old, False))

    def learn_one(self, x: Mapping[str, float], y: bool) -> None:
        """Learn one labelled example (``y`` True: failed within the horizon)."""
        clean = {k: v for k, v in x.items() if math.isfinite(v)}
        if not clean:
            return
        self._get_model().learn_one(clean, bool(y))
        self.labels_seen += 1
        self.positives_seen += bool(y)

    def learn_examples(self, examples: Iterable[Example]) -> None:
        """Learn labelled examples, e.g. those another equipment of the same type returned from `record_failure`."""
        for x, y in examples:
            self.learn_one(x, y)

    def record_failure(self, ts: datetime) -> list[Example]:
        """A failure at `ts`: learn the pending examples of ``[ts - horizon, ts]`` as positive and return them.

        Pending examples before that window stay pending (they become negatives in time); those after `ts`
        are untouched. The next feature sample is taken at the next reading. A failure already labelled
        (the same `ts`: a report delivered twice) changes nothing and returns no example.
        """
        if ts in self._failures:
            return []
        self._failures.append(ts)
        start = ts - self.horizon
        examples: list[Example] = []
        keep: deque[tuple[datetime, dict[str, float]]] = deque()
        for t, x in self._pending:
            if start <= t <= ts:
                examples.append((x, True))
            else:
                keep.append((t, x))
        self._pending = keep
        for x, y in examples:
            self.learn_one(x, y)
        self._outbox.extend(examples)
        self._unshared_failures += 1
        self.failures_seen += 1
        if self.last_failure_ts is None or ts > self.last_failure_ts:
            self.last_failure_ts = ts
        self._next_sample = None
        return examples

    def record_maintenance(self, start: datetime, end: datetime) -> int:
        """Drop the pending examples taken during the maintenance window ``[start, end]``; return how many."""
        before = len(self._pending)
        self._pending = deque((t, x) for t, x in self._pending if not start <= t <= end)
        return before - len(self._pending)

    def drain_outbox(self) -> tuple[list[Example], int]:
        """What was labelled since the last call, for the model shared by the equipment type to learn
        (`learn_examples`): the examples (negatives as they age, positives of failures; at most ``max_outbox``,
        the newest) and the number of failures reported."""
        out, failures = list(self._outbox), self._unshared_failures
        self._outbox.clear()
        self._unshared_failures = 0
        return out, failures

    def adopt(self, other: FailurePredictor) -> None:
        """Start from `other`'s learned model (e.g. the one shared by the equipment type); keep own pending."""
        self._model = copy.deepcopy(other._get_model())
        self.labels_seen = other.labels_seen
        self.positives_seen = other.positives_seen

    def __setstate__(self, state: dict[str, object]) -> None:
        # Pickles written before the outbox and the label memory existed.
        max_outbox = state.setdefault("max_outbox", 1_000)
        state.setdefault("_outbox", deque(maxlen=max_outbox))  # type: ignore[call-overload]  # an int: the default or the pickle's
        state.setdefault("_failures", deque(maxlen=64))
        state.setdefault("_unshared_failures", 0)
        self.__dict__.update(state)

    def weights(self) -> dict[str, float]:
        """The logistic regression's weights on standardised features (JSON-safe), for explanations."""
        lr = self._get_model()["LogisticRegression"]
        return {k: float(v) for k, v in lr.weights.items()}
