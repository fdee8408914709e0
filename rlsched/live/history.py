"""The live side of the runtime model: the store's history in, beliefs out.

The daemon and ``status`` learn from the same rows the same way the
simulator does (:mod:`rlsched.runtime_model`): each successful attempt, in
the order attempts ended, is one observation of its task's history key, in
reference-seconds (its wall-clock runtime times its device's nominal speed
for the task's kind; CPU-only tasks at 1.0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from rlsched.live.store import Store
from rlsched.pool import CATALOGUE, GpuModel
from rlsched.runtime_model import RuntimeModel, history_key
from rlsched.table import WorkloadTable
from rlsched.view import TaskState
from rlsched.workload import KINDS

#: the nominal speed of a device for a task kind (``"compute"``, ``"memory"``)
SpeedOf = Callable[[int | None, str], float]


def speed_from_models(models: dict[int, GpuModel]) -> SpeedOf:
    """A :data:`SpeedOf` over ``{device key: model}`` (unknown: 1.0)."""
    def speed(device: int | None, kind: str) -> float:
        model = models.get(device) if device is not None else None
        return model.speed(kind) if model is not None else 1.0
    return speed


def speed_from_store(store: Store) -> SpeedOf:
    """A :data:`SpeedOf` from the models serve last published (catalogue
    speeds; a model the catalogue lacks counts as 1.0), for read commands."""
    pool = store.known_pool()
    models = {} if pool is None else {
        d.index: CATALOGUE[d.model.name] for d in pool.devices if d.model.name in CATALOGUE}
    return speed_from_models(models)


def observations(runs: Iterable[tuple[str, dict[str, Any], int | None, float, float, int, int]],
                 speed: SpeedOf) -> Iterator[tuple[str, float | None, float]]:
    """``(key, estimate, reference-seconds)`` of :meth:`Store.finished_runs` rows."""
    for job, spec, device, started, ended, *_ in runs:
        kind = spec.get("kind", "compute")
        scale = speed(device, kind) if spec.get("gpus", 1) else 1.0
        estimate = spec.get("estimate", spec.get("work"))  # an older store's estimate was work
        yield (history_key(job, spec["id"], spec.get("category"), spec.get("command")), estimate,
               (ended - started) * scale)


class LiveBeliefs:
    """The runtime model of a store, kept up to date round by round, and
    the predictions of a table's tasks, recomputed only when it changed."""

    def __init__(self) -> None:
        self.model = RuntimeModel()
        #: reference-seconds each task's latest success took, by task row id
        #: (read only for a task that is done: a purged job's rows may be reused)
        self.measured: dict[int, float] = {}
        self._mark: tuple[float, int] = (-math.inf, 0)
        self._cache: tuple = ()
        self._beliefs: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
        #: each (history key, estimate)'s belief under the model's version
        self._memo: tuple[int, dict[tuple[str, float | None], tuple[float, float]]] = (-1, {})

    def learn(self, store: Store, speed: SpeedOf) -> None:
        """Feed the attempts that succeeded since the last call."""
        runs = store.finished_runs(self._mark)
        if runs:
            self._mark = (runs[-1][4], runs[-1][5])
            for run, (key, estimate, actual) in zip(runs, observations(runs, speed)):
                self.model.observe(key, estimate, actual)
                self.measured[run[6]] = actual

    def of(self, table: WorkloadTable, rows: Sequence[int], state: bytes | bytearray
           ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(predicted, spread)`` of every task of ``table`` (``rows``: each
        one's task row id; ``state``: the view's task states), as a view holds
        them: a finished task's measured runtime (spread 0), else the model's
        belief."""
        finished = bytes(s == TaskState.DONE for s in state)
        key = (self.model.version, table, finished)
        if self._cache == key:
            return self._beliefs
        measured, keys, estimates = self.measured, table.history_key, table.estimate
        if self._cache[:2] == key[:2]:  # the same model and table: only what finished since
            predicted, spread = list(self._beliefs[0]), list(self._beliefs[1])
            changed: Iterable[int] = [t for t, (was, now) in enumerate(zip(self._cache[2], finished))
                                      if was != now]
        else:
            predicted, spread = [0.0] * table.n_tasks, [0.0] * table.n_tasks
            changed = range(table.n_tasks)
        # a belief is a function of the model, the key and the estimate: worked
        # out once per model version for each pair (a new table, as jobs finish
        # and arrive, holds mostly tasks of keys already predicted)
        if self._memo[0] != self.model.version:
            self._memo = (self.model.version, {})
        memo, predict = self._memo[1], self.model.predict
        for t in changed:
            r = rows[t]
            if finished[t] and r in measured:
                predicted[t], spread[t] = measured[r], 0.0
                continue
            estimate = estimates[t]
            pair = keys[t], estimate if math.isfinite(estimate) else None
            belief = memo.get(pair)
            if belief is None:
                belief = memo[pair] = predict(keys[t], estimate)
            predicted[t], spread[t] = belief
        self._beliefs = (tuple(predicted), tuple(spread))
        self._cache = key
        return self._beliefs


    def source(self, table: WorkloadTable, task: int) -> str:
        """What the prediction of ``table``'s task rests on (:meth:`RuntimeModel.source`)."""
        return self.model.source(table.history_key[task], table.estimate[task])


def wall_seconds(reference_s: float, kind_index: int, model: GpuModel | None) -> float:
    """A reference-seconds prediction in seconds on a device of ``model``
    (None: a CPU-only task, at reference speed)."""
    return reference_s if model is None else reference_s / model.speed(KINDS[kind_index])


def add_predictions(store: Store, status: dict[str, Any]) -> None:
    """Give each task of a :meth:`Store.status` that has not started yet its
    ``predicted_s``: what the runtime model, fed the store's whole history,
    believes it takes now, on the reference device, and ``predicted_from``,
    what that rests on (a started task keeps the prediction its attempt
    started with, and its source)."""
    speed = speed_from_store(store)
    model = RuntimeModel.from_history(observations(store.finished_runs(), speed))
    specs = {(r[0], r[1]): json.loads(r[2]) for r in store.db.execute(
        "SELECT j.name, t.task_id, t.spec FROM tasks t JOIN jobs j ON t.job=j.id")}
    for job in status["jobs"]:
        for task in job["tasks"]:
            if task["predicted_s"] is not None:
                continue
            spec = specs[(job["name"], task["id"])]
            key = history_key(job["name"], task["id"], spec.get("category"), spec.get("command"))
            estimate = spec.get("estimate", spec.get("work"))
            task["predicted_s"] = model.predict(key, estimate).seconds
            task["predicted_from"] = model.source(key, estimate)
