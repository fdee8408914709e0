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
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rlsched.live.store import Store
from rlsched.pool import CATALOGUE, GpuModel
from rlsched.runtime_model import RuntimeModel, history_key
from rlsched.table import KIND_INDEX, WorkloadTable

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


def observations(runs: Iterable[tuple[str, dict[str, Any], int | None, float, float, int]],
                 speed: SpeedOf) -> Iterator[tuple[str, float | None, float]]:
    """``(key, estimate, reference-seconds)`` of :meth:`Store.finished_runs` rows."""
    for job, spec, device, started, ended, _ in runs:
        kind = spec.get("kind", "compute")
        scale = speed(device, kind) if spec.get("gpus", 1) else 1.0
        estimate = spec.get("estimate", spec.get("work"))  # an older store's estimate was work
        yield (history_key(job, spec["id"], spec.get("category")), estimate,
               (ended - started) * scale)


class LiveBeliefs:
    """The runtime model of a store, kept up to date round by round, and
    the predictions of a table's tasks, recomputed only when it changed."""

    def __init__(self) -> None:
        self.model = RuntimeModel()
        #: reference-seconds each finished task took, by ``(job name, task id)``
        self.measured: dict[tuple[str, str], float] = {}
        self._mark: tuple[float, int] = (-math.inf, 0)
        self._cache: tuple[int, int, WorkloadTable | None] = (-1, -1, None)
        self._beliefs: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())

    def learn(self, store: Store, speed: SpeedOf) -> None:
        """Feed the attempts that succeeded since the last call."""
        runs = store.finished_runs(self._mark)
        if runs:
            self._mark = (runs[-1][4], runs[-1][5])
            for run, (key, estimate, actual) in zip(runs, observations(runs, speed)):
                self.model.observe(key, estimate, actual)
                self.measured[(run[0], run[1]["id"])] = actual

    def of(self, table: WorkloadTable) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(predicted, spread)`` of every task of ``table``, as a view holds
        them: a finished task's measured runtime (spread 0), else the model's
        belief."""
        if self._cache != (self.model.version, len(self.measured), table):
            predict, measured = self.model.predict, self.measured
            beliefs = [(measured[i], 0.0) if i in measured else predict(k, e)
                       for i, k, e in zip(table.task_ids, table.history_key, table.estimate)]
            self._beliefs = (tuple(b[0] for b in beliefs), tuple(b[1] for b in beliefs))
            self._cache = (self.model.version, len(self.measured), table)
        return self._beliefs


def wall_seconds(reference_s: float, kind_index: int, model: GpuModel | None) -> float:
    """A reference-seconds prediction in seconds on a device of ``model``
    (None: a CPU-only task, at reference speed)."""
    if model is None:
        return reference_s
    return reference_s / (model.memory_speed if kind_index == KIND_INDEX["memory"]
                          else model.compute_speed)


def add_predictions(store: Store, status: dict[str, Any]) -> None:
    """Give each task of a :meth:`Store.status` its ``predicted_s``: what the
    runtime model, fed the store's whole history, believes it takes, in
    seconds on its device where it has one (else on the reference device)."""
    speed = speed_from_store(store)
    model = RuntimeModel.from_history(observations(store.finished_runs(), speed))
    specs = {(r[0], r[1]): json.loads(r[2]) for r in store.db.execute(
        "SELECT j.name, t.task_id, t.spec FROM tasks t JOIN jobs j ON t.job=j.id")}
    for job in status["jobs"]:
        for task in job["tasks"]:
            spec = specs[(job["name"], task["id"])]
            belief = model.predict(history_key(job["name"], task["id"], spec.get("category")),
                                   spec.get("estimate", spec.get("work")))
            on = speed(task["device"], spec.get("kind", "compute")) if spec.get("gpus", 1) else 1.0
            task["predicted_s"] = belief.seconds / on
