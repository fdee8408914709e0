"""The runtime model: what a scheduler may believe about how long a task takes.

No pool knows a task's runtime before it runs. It has the user's estimate
(often wrong by a factor, sometimes missing) and the history of finished
tasks. This model blends the two, in log space, where runtime errors are
multiplicative. For a task of history key ``k`` with estimate ``e``:

* *estimate*: ``log e + bias``, where ``bias`` is the mean of
  ``log(actual / estimate)`` over finished tasks of ``k`` that had an
  estimate (over all keys until ``k`` has one), shrunk toward 0 as if
  :data:`PSEUDO` prior observations said 0; its variance is those ratios'
  variance, shrunk toward :data:`ESTIMATE_SIGMA` squared the same way;
* *history*: the mean log runtime of finished tasks of ``k``; its variance
  is theirs (shrunk toward :data:`HISTORY_SIGMA` squared) times ``1 + 1/n``;
  until ``k`` has history, that of every finished task stands in (a wide
  prior that pulls a wild estimate toward what tasks usually take);
* both: their precision-weighted mean; one: that one; before anything has
  finished and without an estimate, :data:`DEFAULT_RUNTIME_S` with spread
  :data:`UNKNOWN_SIGMA`.

A prediction is the median ``exp(mu)`` in reference-seconds (runtime on the
reference device: a finished task's seconds times its device's nominal speed,
so history is shared across GPU models) and its spread ``sigma`` in log space.

Statistics are refreshed at *refresh points*: every observation of a key up to
:data:`EXACT_UP_TO`, then each time its count has grown by
:data:`REFRESH_GROWTH`; the statistics of all keys together, a weak prior that
every task of a key without history reads, each time their count doubles.
Between refresh points predictions do not move. That bounds the simulator's
cost (a refresh re-predicts the tasks of its key) to O(n log n) over an
episode, and keeps the model a pure function of the ordered history: the live
daemon, replaying its store in the order tasks ended, predicts exactly what
the simulator does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Iterable
from typing import NamedTuple

#: prior observations that pull a key's statistics toward the priors
PSEUDO = 2.0
#: prior log-space error of a user's estimate (a factor of e either way)
ESTIMATE_SIGMA = 1.0
#: prior log-space spread of the runtimes of one key
HISTORY_SIGMA = 1.0
#: what a task with no estimate is believed to take before anything finished
DEFAULT_RUNTIME_S = 60.0
#: and how little that belief is worth
UNKNOWN_SIGMA = 2.0
#: every observation refreshes a scope's statistics up to this count
EXACT_UP_TO = 16
#: beyond it, a refresh when the count has grown by this factor
REFRESH_GROWTH = 1.125
#: the statistics of all keys together refresh when their count has grown by this
ALL_GROWTH = 2.0
#: runtimes and estimates below this many seconds count as this many
_FLOOR_S = 1e-3
#: the scope of all keys together
_ALL = "\0all"
#: a job name's trailing counter (``sweep-3``, ``run_07``, ``wf#2``)
_COUNTER = re.compile(r"[-_.#]*[0-9]+$")
#: a number in a command: an integer, a decimal, an exponent
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+")


class Prediction(NamedTuple):
    """A runtime belief: ``seconds`` (the median, reference-seconds) and
    ``sigma``, the spread of ``log(runtime)`` around ``log(seconds)``."""

    seconds: float
    sigma: float


def history_key(job_name: str, task_id: str, category: str | None = None,
                command: str | None = None) -> str:
    """What identifies a task's type in history: its ``category`` where the
    source gives one (WfCommons, a job file's ``category:``); else, for a
    task with a command, the command's shape (:func:`command_shape`: runs
    that differ only in numbers, a seed or an output directory, share it);
    else its task id within its job's family, the job name without a
    trailing counter (``sweep-3/train`` and ``sweep-4/train`` share
    ``sweep/train``)."""
    if category:
        return category
    if command:
        return command_shape(command)
    family = _COUNTER.sub("", job_name) or job_name
    return f"{family}/{task_id}"


def command_shape(command: str) -> str:
    """``$ `` and the command with every number written ``#`` and its spaces
    collapsed: ``python train.py --lr 0.1 --seed 3 --out runs/7`` and ``...
    --lr 0.01 --seed 4 --out runs/8`` have one shape; another script, model
    name or flag is another shape."""
    return "$ " + " ".join(_NUMBER.sub("#", command).split())


def log_estimate(estimate: float) -> float:
    """The log of an estimate as the model reads it (tiny ones floored)."""
    return math.log(max(estimate, _FLOOR_S))


class _Moments:
    """Count, mean and sum of squared deviations (Welford), in arrival order."""

    __slots__ = ("n", "mean", "m2")

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def variance(self, prior_sigma: float) -> float:
        """Sample variance shrunk toward ``prior_sigma`` squared."""
        return (PSEUDO * prior_sigma ** 2 + self.m2) / (PSEUDO + self.n - 1)


class _Scope:
    """One key's (or every key's) statistics and their last refreshed snapshot."""

    __slots__ = ("runtime", "ratio", "history", "estimate", "refreshed_at", "next_refresh",
                 "exact_up_to", "growth")

    def __init__(self, exact_up_to: int = EXACT_UP_TO, growth: float = REFRESH_GROWTH) -> None:
        self.exact_up_to, self.growth = exact_up_to, growth
        self.runtime, self.ratio = _Moments(), _Moments()
        self.history: tuple[float, float, int] | None = None  # mean, variance, n
        self.estimate: tuple[float, float] | None = None  # bias, variance
        self.refreshed_at = self.next_refresh = 0

    def add(self, log_actual: float, log_ratio: float | None) -> bool:
        """Add one observation; whether the snapshot was refreshed."""
        runtime = self.runtime
        runtime.add(log_actual)
        if log_ratio is not None:
            self.ratio.add(log_ratio)
        n = runtime.n
        if n > self.exact_up_to and n < self.next_refresh:
            return False
        self.refreshed_at = n
        self.next_refresh = math.ceil(n * self.growth)
        self.history = (runtime.mean, runtime.variance(HISTORY_SIGMA), n)
        r = self.ratio
        if r.n:
            self.estimate = (r.mean * r.n / (r.n + PSEUDO), r.variance(ESTIMATE_SIGMA))
        return True

    def copy(self) -> _Scope:
        twin = _Scope(self.exact_up_to, self.growth)
        for part in ("runtime", "ratio"):
            mine, theirs = getattr(self, part), getattr(twin, part)
            theirs.n, theirs.mean, theirs.m2 = mine.n, mine.mean, mine.m2
        twin.history, twin.estimate, twin.refreshed_at, twin.next_refresh = \
            self.history, self.estimate, self.refreshed_at, self.next_refresh
        return twin


class RuntimeModel:
    """Predictions of task runtimes from estimates and finished-task history.

    The simulator feeds it each task as it finishes; the live daemon feeds it
    its store's successful attempts, in the order they ended. Same history,
    same predictions (the module says how they are made)::

        model = RuntimeModel()
        model.observe("train", estimate=600.0, actual=900.0)
        model.predict("train", estimate=600.0)  # Prediction(seconds=..., sigma=...)
    """

    def __init__(self) -> None:
        self._scopes: dict[str, _Scope] = {}
        self._all = _Scope(1, ALL_GROWTH)
        #: bumped on every refresh, so a cache of predictions knows it is stale
        self.version = 0

    @classmethod
    def from_history(cls, rows: Iterable[tuple[str, float | None, float]]) -> RuntimeModel:
        """A model fed ``(key, estimate, actual)`` rows, in order."""
        model = cls()
        for key, estimate, actual in rows:
            model.observe(key, estimate, actual)
        return model

    @property
    def observations(self) -> int:
        return self._all.runtime.n

    @property
    def known_keys(self) -> Container[str]:
        """The keys with at least one finished run, as a live set-like view
        (it grows as the model observes; copy it to keep it)."""
        return self._scopes.keys()

    def observe(self, key: str, estimate: float | None, actual: float) -> tuple[bool, bool]:
        """Record a finished task: ``actual`` reference-seconds, the
        ``estimate`` it had (None: none). Returns whether the statistics of
        ``key``, and those of every key together, were refreshed."""
        log_actual = math.log(max(actual, _FLOOR_S))
        log_ratio = None if estimate is None or not math.isfinite(estimate) else \
            log_actual - log_estimate(estimate)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope()
        changed = scope.add(log_actual, log_ratio), self._all.add(log_actual, log_ratio)
        if any(changed):
            self.version += 1
        return changed

    def predict(self, key: str, estimate: float | None) -> Prediction:
        """The belief about a task of ``key`` with the user's ``estimate``."""
        alpha, beta, sigma, beta_alone, sigma_alone = self.coefficients(key)
        if estimate is None or not math.isfinite(estimate):
            return Prediction(math.exp(beta_alone), sigma_alone)
        return Prediction(math.exp(alpha * log_estimate(estimate) + beta), sigma)

    def coefficients(self, key: str) -> tuple[float, float, float, float, float]:
        """``(alpha, beta, sigma, beta_alone, sigma_alone)``: a task of ``key``
        with estimate ``e`` is believed to take ``exp(alpha * log_estimate(e)
        + beta)``, spread ``sigma``; one without, ``exp(beta_alone)``, spread
        ``sigma_alone``. The same for every task of a key, so a simulator
        re-predicts a key's tasks at the cost of one ``exp`` each;
        :meth:`predict` is this, for one task."""
        scope = self._scopes.get(key)
        history = scope.history if scope is not None and scope.history is not None \
            else self._all.history
        mu = precision = 0.0
        if history is not None:
            precision = 1.0 / (history[1] * (1.0 + 1.0 / history[2]))
            mu = precision * history[0]
        if precision == 0.0:
            beta_alone, sigma_alone = math.log(DEFAULT_RUNTIME_S), UNKNOWN_SIGMA
        else:
            beta_alone, sigma_alone = mu / precision, math.sqrt(1.0 / precision)
        bias, variance = (scope.estimate if scope is not None and scope.estimate is not None
                          else self._all.estimate) or (0.0, ESTIMATE_SIGMA ** 2)
        alpha = 1.0 / variance
        mu += alpha * bias
        precision += alpha
        return (alpha / precision, mu / precision, math.sqrt(1.0 / precision), beta_alone,
                sigma_alone)

    def source(self, key: str, estimate: float | None) -> str:
        """What :meth:`predict` of ``key`` and ``estimate`` rests on, for
        people reading it: ``history`` (finished runs of this key), ``all
        history`` (no run of this key yet: every key's runs stand in), each
        with ``estimate+`` before it where an estimate was blended in;
        ``estimate`` alone, before anything has finished; or ``default``
        (:data:`DEFAULT_RUNTIME_S`: nothing known at all, not a prediction)."""
        scope = self._scopes.get(key)
        own = scope is not None and scope.history is not None
        history = "history" if own else "all history" if self._all.history is not None else ""
        has_estimate = estimate is not None and math.isfinite(estimate)
        if has_estimate:
            return f"estimate+{history}" if history else "estimate"
        return history or "default"

    def uses_all(self, key: str) -> bool:
        """Whether some task of ``key`` reads every key's statistics (its key
        lacks history, or estimate corrections, of its own): whose tasks to
        re-predict when those are refreshed."""
        scope = self._scopes.get(key)
        return scope is None or scope.history is None or scope.estimate is None

    def copy(self) -> RuntimeModel:
        """An independent copy (for a forked simulator)."""
        twin = RuntimeModel()
        twin._scopes = {k: s.copy() for k, s in self._scopes.items()}
        twin._all = self._all.copy()
        twin.version = self.version
        return twin
