"""Arrival processes: turn any set of DAGs into a batch or an online workload.

*batch*: every job at time 0. *poisson*: jobs in a seeded random order, with
exponential gaps whose rate makes the offered load a given fraction of the
pool's capacity: ``rate = load * n_devices / mean_job_device_seconds``, where a
job's device-seconds are its GPU work at the pool's mean speed for each kind.
*trace*: each instance as it comes, its jobs at their own arrival times (a
pool's history, a job file's ``arrival:``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from rlsched.pool import Pool
from rlsched.workload import Instance, Job, task_speed

ARRIVALS = ("batch", "poisson", "trace")


def job_device_seconds(job: Job, pool: Pool) -> float:
    """GPU work of ``job`` in device-seconds at the pool's mean speed per kind
    (a gang of N GPUs holds N devices)."""
    mean_speed = {k: float(np.mean([d.model.speed(k) for d in pool.devices]))
                  for k in ("compute", "memory")}
    return sum((t.work or 0.0) * t.gpus / (mean_speed[t.kind] if t.speeds is None else float(
        np.mean([task_speed(t.speeds, t.kind, d.model) for d in pool.devices])))
        for t in job.tasks if t.gpus)


def batch(instance: Instance) -> Instance:
    return Instance(instance.name, tuple(j.at(0.0) for j in instance.jobs),
                    instance.source, instance.optimum, instance.colocation)


def online(instances: list[Instance], pool: Pool, load: float, rng: np.random.Generator,
           source: str = "") -> Instance:
    """All jobs of ``instances`` as one Poisson stream (names made unique)."""
    seen: dict[str, int] = {}
    jobs = []
    for job in (j for inst in instances for j in inst.jobs):
        n = seen.get(job.name, 0)
        seen[job.name] = n + 1
        jobs.append(job if n == 0 else replace(job, name=f"{job.name}#{n + 1}"))
    colocation = {k: v for inst in instances for k, v in inst.colocation.items()}
    return poisson(jobs, pool, load, rng, name="online", source=source, colocation=colocation)


def poisson(jobs: list[Job], pool: Pool, load: float, rng: np.random.Generator,
            name: str = "online", source: str = "",
            colocation: Mapping[tuple[str, str, str], tuple[float, float]] | None = None
            ) -> Instance:
    """A Poisson stream of ``jobs`` (shuffled by ``rng``) at offered ``load``."""
    order = rng.permutation(len(jobs))
    mean_work = float(np.mean([job_device_seconds(j, pool) for j in jobs]))
    rate = load * len(pool) / max(mean_work, 1e-9)
    gaps = rng.exponential(1.0 / rate, size=len(jobs))
    gaps[0] = 0.0
    times = np.cumsum(gaps)
    return Instance(name, tuple(jobs[i].at(round(float(t), 6)) for i, t in zip(order, times)),
                    source, colocation=colocation or {})
