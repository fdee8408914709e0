"""A workload flattened into arrays: what the simulator, the runtime and the
schedulers index by integer.

The table is knowledge, never truth: it holds each task's user estimate and
history key but not its true runtime, and its jobs are copies without it.
The simulator keeps the truth beside it (:meth:`WorkloadTable.with_truth`).

Jobs are sorted by arrival, so the jobs that have arrived at any time are a
prefix ``0..n_arrived-1``. Tasks are numbered globally, each job's tasks a
contiguous range, parents before children. Per-task columns are tuples (fast
to index in the event loop); :meth:`WorkloadTable.arrays` gives numpy copies
for vectorised code such as the observation encoder.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import repeat
from typing import TYPE_CHECKING, NamedTuple

from rlsched.pool import GpuModel
from rlsched.runtime_model import history_key
from rlsched.workload import KINDS, Job, placement_allows, task_speed

if TYPE_CHECKING:
    import numpy as np

KIND_INDEX = {k: i for i, k in enumerate(KINDS)}


@dataclass(frozen=True, eq=False)
class WorkloadTable:
    """Static description of every task and job of an episode.

    :param jobs: the jobs, sorted by arrival, their tasks without ``work``
        or ``estimate`` (both are columns: :attr:`estimate` is what schedulers are told)
    :param job_of: job index of each task
    :param task_ids: ``(job name, task id)`` of each task
    :param estimate: the user's estimate of each task, reference-seconds (NaN: none)
    :param history_key: what identifies each task's type in runtime history
    :param kind: index into :data:`rlsched.workload.KINDS` of each task
    :param memory: GiB of GPU memory of each task
    :param gpu: whether each task needs a GPU
    :param gpus: how many GPUs each task takes at once (0: CPU-only; above 1:
        a gang, started on all of them together, ``memory`` on each)
    :param parents: global indices of each task's parents
    :param children: global indices of each task's children
    :param job_start: first task index of each job, plus the total at the end
    :param placement: each task's ``(gpus_allowed, gpus_avoid)``, or None for
        the whole table where no task has either (the fast path)
    :param speeds: each task's measured speeds per GPU model (see
        :attr:`rlsched.workload.Task.speeds`), or None for the whole table
        where no task has any (the fast path); read through :meth:`speed`
    """

    jobs: tuple[Job, ...]
    job_of: tuple[int, ...]
    task_ids: tuple[tuple[str, str], ...]
    estimate: tuple[float, ...]
    history_key: tuple[str, ...]
    kind: tuple[int, ...]
    memory: tuple[float, ...]
    gpu: tuple[bool, ...]
    gpus: tuple[int, ...]
    parents: tuple[tuple[int, ...], ...]
    children: tuple[tuple[int, ...], ...]
    job_start: tuple[int, ...]
    placement: tuple[tuple[tuple[int | str, ...], tuple[int | str, ...]], ...] | None = None
    speeds: tuple[Mapping[str, float] | None, ...] | None = None

    @classmethod
    def from_jobs(cls, jobs: tuple[Job, ...] | list[Job]) -> WorkloadTable:
        return cls.with_truth(jobs)[0]

    @classmethod
    def with_truth(cls, jobs: tuple[Job, ...] | list[Job]
                   ) -> tuple[WorkloadTable, tuple[float, ...]]:
        """The table, and beside it each task's true work (0 where a job
        has none): what only the simulator may hold."""
        return cls.from_parts([JobPart.of(job) for job in jobs])

    @classmethod
    def from_parts(cls, parts: Sequence[JobPart]) -> tuple[WorkloadTable, tuple[float, ...]]:
        """:meth:`with_truth` of the parts' jobs, from their parts: a caller
        that builds tables again and again from mostly the same jobs (the
        live daemon, as jobs finish and arrive) keeps each job's part and
        pays here only for numbering the tasks."""
        ordered = sorted(parts, key=lambda part: part.job.arrival)  # stable: ties keep order
        job_of: list[int] = []
        ids: list[tuple[str, str]] = []
        work: list[float] = []
        estimate: list[float] = []
        keys: list[str] = []
        kind: list[int] = []
        mem: list[float] = []
        gpu: list[bool] = []
        gpus: list[int] = []
        parents: list[tuple[int, ...]] = []
        rules: list[tuple[tuple[int | str, ...], tuple[int | str, ...]]] = []
        speeds: list[Mapping[str, float] | None] = []
        job_start = [0]
        for j, part in enumerate(ordered):
            base = job_start[-1]
            job_of += repeat(j, len(part.ids))
            ids += part.ids
            work += part.work
            estimate += part.estimate
            keys += part.keys
            kind += part.kind
            mem += part.memory
            gpu += part.gpu
            gpus += part.gpus
            parents += [tuple([base + p for p in ps]) if ps else ps for ps in part.parents] \
                if base else part.parents
            rules += part.rules
            speeds += part.speeds
            job_start.append(base + len(part.ids))
        children: list[list[int]] = [[] for _ in work]
        for c, ps in enumerate(parents):
            for p in ps:
                children[p].append(c)
        table = cls(tuple(part.job for part in ordered), tuple(job_of), tuple(ids),
                    tuple(estimate), tuple(keys), tuple(kind), tuple(mem), tuple(gpu),
                    tuple(gpus), tuple(parents), tuple(tuple(c) for c in children),
                    tuple(job_start),
                    tuple(rules) if any(part.has_rules for part in ordered) else None,
                    tuple(speeds) if any(part.has_speeds for part in ordered) else None)
        return table, tuple(work)

    def may_use(self, task: int, index: int, model: str) -> bool:
        """Whether ``task``'s placement rules let it run on device ``index``
        of model ``model`` (always, where no task of the table has rules)."""
        if self.placement is None:
            return True
        allowed, avoid = self.placement[task]
        return placement_allows(allowed, avoid, index, model)

    def speed(self, task: int, model: GpuModel) -> float:
        """``task``'s speed on ``model`` (:func:`rlsched.workload.task_speed`)."""
        return task_speed(None if self.speeds is None else self.speeds[task], KINDS[self.kind[task]],
                          model)

    @cached_property
    def has_gangs(self) -> bool:
        """Whether any task takes more than one GPU (else every placement is one device)."""
        return any(g > 1 for g in self.gpus)

    @property
    def n_tasks(self) -> int:
        return len(self.job_of)

    @property
    def n_jobs(self) -> int:
        return len(self.jobs)

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """Numpy views of the per-task columns (read-only). Numpy is imported
        here, not with the module: the live daemon starts without it."""
        import numpy as np

        out = {
            "job_of": np.array(self.job_of, dtype=np.int64),
            "estimate": np.array(self.estimate, dtype=np.float64),
            "kind": np.array(self.kind, dtype=np.int64),
            "memory": np.array(self.memory, dtype=np.float64),
            "gpu": np.array(self.gpu, dtype=bool),
            "gpus": np.array(self.gpus, dtype=np.int64),
        }
        for a in out.values():
            a.flags.writeable = False
        return out

    def tasks_of(self, job: int) -> range:
        return range(self.job_start[job], self.job_start[job + 1])

    @cached_property
    def tasks_by_key(self) -> dict[str, tuple[int, ...]]:
        """The tasks of each history key, in table order."""
        out: dict[str, list[int]] = {}
        for t, key in enumerate(self.history_key):
            out.setdefault(key, []).append(t)
        return {k: tuple(v) for k, v in out.items()}


class JobPart(NamedTuple):
    """One job's columns of a :class:`WorkloadTable`, its tasks numbered
    from 0 (parents first): what a table of several jobs is assembled from
    (:meth:`WorkloadTable.from_parts`). The job is the table's copy,
    without truth or estimates (per-task knowledge lives in the columns:
    drawn estimates replace a column, never the jobs)."""

    job: Job
    ids: tuple[tuple[str, str], ...]
    work: tuple[float, ...]
    estimate: tuple[float, ...]
    keys: tuple[str, ...]
    kind: tuple[int, ...]
    memory: tuple[float, ...]
    gpu: tuple[bool, ...]
    gpus: tuple[int, ...]
    parents: tuple[tuple[int, ...], ...]
    rules: tuple[tuple[tuple[int | str, ...], tuple[int | str, ...]], ...]
    speeds: tuple[Mapping[str, float] | None, ...]
    has_rules: bool
    has_speeds: bool

    @classmethod
    def of(cls, job: Job) -> JobPart:
        """``job``'s part: its tasks parents first (ties in file order)."""
        order = _topological(job)
        local = {tid: i for i, tid in enumerate(order)}
        by_id = {t.id: t for t in job.tasks}
        tasks = [by_id[tid] for tid in order]
        rules = tuple((tuple(t.gpus_allowed), tuple(t.gpus_avoid)) for t in tasks)
        speeds = tuple(t.speeds for t in tasks)
        blind = replace(job, tasks=tuple(t.evolve(work=None, estimate=None) for t in job.tasks)) \
            if any(t.work is not None or t.estimate is not None for t in job.tasks) else job
        return cls(
            blind, tuple((job.name, t.id) for t in tasks),
            tuple(float(t.work or 0.0) for t in tasks),
            tuple(math.nan if t.estimate is None else float(t.estimate) for t in tasks),
            tuple(history_key(job.name, t.id, t.category, t.command) for t in tasks),
            tuple(KIND_INDEX[t.kind] for t in tasks), tuple(float(t.gpu_memory) for t in tasks),
            tuple(t.gpus > 0 for t in tasks), tuple(int(t.gpus) for t in tasks),
            tuple(tuple(local[p] for p in t.parents) for t in tasks), rules, speeds,
            any(a or b for a, b in rules), any(sp is not None for sp in speeds))


def _topological(job: Job) -> list[str]:
    """Task ids parents-first, ties broken by file order (deterministic)."""
    position = {t.id: i for i, t in enumerate(job.tasks)}
    children: dict[str, list[str]] = {t.id: [] for t in job.tasks}
    waiting = {t.id: len(set(t.parents)) for t in job.tasks}
    for t in job.tasks:
        for p in set(t.parents):
            children[p].append(t.id)
    free = [position[t] for t, n in waiting.items() if n == 0]  # Kahn's, smallest position first
    heapq.heapify(free)
    order = []
    while free:
        task = job.tasks[heapq.heappop(free)].id
        order.append(task)
        for c in children[task]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(free, position[c])
    return order
