"""A workload flattened into arrays: what the simulator, the runtime and the
schedulers index by integer.

Jobs are sorted by arrival, so the jobs that have arrived at any time are a
prefix ``0..n_arrived-1``. Tasks are numbered globally, each job's tasks a
contiguous range, parents before children. Per-task columns are tuples (fast
to index in the event loop); :meth:`WorkloadTable.arrays` gives numpy copies
for vectorised code such as the observation encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np

from rlsched.workload import KINDS, Job, placement_allows

KIND_INDEX = {k: i for i, k in enumerate(KINDS)}


@dataclass(frozen=True, eq=False)
class WorkloadTable:
    """Static description of every task and job of an episode.

    :param jobs: the jobs, sorted by arrival
    :param job_of: job index of each task
    :param task_ids: ``(job name, task id)`` of each task
    :param work: reference-seconds of each task
    :param kind: index into :data:`rlsched.workload.KINDS` of each task
    :param memory: GiB of GPU memory of each task
    :param gpu: whether each task needs a GPU
    :param parents: global indices of each task's parents
    :param children: global indices of each task's children
    :param job_start: first task index of each job, plus the total at the end
    :param placement: each task's ``(gpus_allowed, gpus_avoid)``, or None for
        the whole table where no task has either (the fast path)
    """

    jobs: tuple[Job, ...]
    job_of: tuple[int, ...]
    task_ids: tuple[tuple[str, str], ...]
    work: tuple[float, ...]
    kind: tuple[int, ...]
    memory: tuple[float, ...]
    gpu: tuple[bool, ...]
    parents: tuple[tuple[int, ...], ...]
    children: tuple[tuple[int, ...], ...]
    job_start: tuple[int, ...]
    placement: tuple[tuple[tuple[int | str, ...], tuple[int | str, ...]], ...] | None = None

    @classmethod
    def from_jobs(cls, jobs: tuple[Job, ...] | list[Job]) -> WorkloadTable:
        ordered = tuple(sorted(jobs, key=lambda j: j.arrival))  # stable: ties keep order
        job_of, ids, work, kind, mem, gpu, parents = [], [], [], [], [], [], []
        rules: list[tuple[tuple[int | str, ...], tuple[int | str, ...]]] = []
        job_start = [0]
        for j, job in enumerate(ordered):
            base = job_start[-1]
            order = _topological(job)
            local = {tid: base + i for i, tid in enumerate(order)}
            by_id = {t.id: t for t in job.tasks}
            for tid in order:
                t = by_id[tid]
                job_of.append(j)
                ids.append((job.name, t.id))
                work.append(float(t.work or 0.0))
                kind.append(KIND_INDEX[t.kind])
                mem.append(float(t.gpu_memory))
                gpu.append(t.gpus > 0)
                parents.append(tuple(local[p] for p in t.parents))
                rules.append((tuple(t.gpus_allowed), tuple(t.gpus_avoid)))
            job_start.append(base + len(order))
        children: list[list[int]] = [[] for _ in work]
        for c, ps in enumerate(parents):
            for p in ps:
                children[p].append(c)
        return cls(ordered, tuple(job_of), tuple(ids), tuple(work), tuple(kind), tuple(mem),
                   tuple(gpu), tuple(parents), tuple(tuple(c) for c in children),
                   tuple(job_start), tuple(rules) if any(a or b for a, b in rules) else None)

    def may_use(self, task: int, index: int, model: str) -> bool:
        """Whether ``task``'s placement rules let it run on device ``index``
        of model ``model`` (always, where no task of the table has rules)."""
        if self.placement is None:
            return True
        allowed, avoid = self.placement[task]
        return placement_allows(allowed, avoid, index, model)

    @property
    def n_tasks(self) -> int:
        return len(self.work)

    @property
    def n_jobs(self) -> int:
        return len(self.jobs)

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """Numpy views of the per-task columns (read-only)."""
        out = {
            "job_of": np.array(self.job_of, dtype=np.int64),
            "work": np.array(self.work, dtype=np.float64),
            "kind": np.array(self.kind, dtype=np.int64),
            "memory": np.array(self.memory, dtype=np.float64),
            "gpu": np.array(self.gpu, dtype=bool),
        }
        for a in out.values():
            a.flags.writeable = False
        return out

    def tasks_of(self, job: int) -> range:
        return range(self.job_start[job], self.job_start[job + 1])


def _topological(job: Job) -> list[str]:
    """Task ids parents-first, ties broken by file order (deterministic)."""
    position = {t.id: i for i, t in enumerate(job.tasks)}
    g = nx.DiGraph()
    g.add_nodes_from(position)
    g.add_edges_from((p, t.id) for t in job.tasks for p in t.parents)
    return list(nx.lexicographical_topological_sort(g, key=position.__getitem__))
