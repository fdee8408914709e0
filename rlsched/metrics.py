"""Metrics of a finished episode, and lower bounds that make them ratios.

Lower bounds hold for any schedule on the pool (perturbations only slow
devices down, and sharing a device never raises its throughput):

* critical path: a job cannot finish before its arrival plus its longest
  chain of tasks, each on the device fastest for its kind;
* work: from any time ``s``, the GPU work of the jobs arriving at or after
  ``s``, each task at its fastest device's speed (its own measured speeds,
  where it has them), spread over all devices (each doing at most the
  measured co-location's best pair's worth, where the workload measures it),
  must still be done: ``makespan >= s + work(s) / n_devices``. A gang of N
  GPUs holds N devices for as long as it runs (at its slowest member's speed,
  never above the fastest), so it counts N times.

Both read the true work, after the fact: what no scheduler was shown.
The makespan bound is the larger of the two; the JCT bound is the mean
critical path. Where an instance ships a proven optimum for identical
devices, it is reported beside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rlsched.pool import Pool
from rlsched.sim import SimResult
from rlsched.table import WorkloadTable
from rlsched.workload import KINDS


@dataclass(frozen=True)
class Metrics:
    """Measures of one episode (seconds, except the ratios and counts).

    :param makespan: last completion minus first arrival
    :param avg_jct: mean job completion time (finish minus arrival)
    :param weighted_jct: priority-weighted mean JCT
    :param slowdown: mean of JCT over the job's critical-path bound
    :param utilization: busy device-seconds over devices times makespan
    :param deadline_misses: jobs that finished after their deadline
    :param lower_bound: makespan lower bound (see module)
    :param jct_lower_bound: mean JCT lower bound
    :param failed_attempts: attempts lost to device failures
    """

    makespan: float
    avg_jct: float
    weighted_jct: float
    slowdown: float
    utilization: float
    deadline_misses: int
    lower_bound: float
    jct_lower_bound: float
    failed_attempts: int


def fastest_runtimes(table: WorkloadTable, work: Sequence[float], pool: Pool) -> list[float]:
    """Each task's true runtime alone on the device fastest for its kind
    (CPU-only tasks at reference speed); ``work``: the true work, table order."""
    best = [pool.max_speed(k) for k in KINDS]
    if table.speeds is None:
        return [w / best[k] if g else w for w, k, g in zip(work, table.kind, table.gpu)]
    models = {d.model.name: d.model for d in pool.devices}.values()
    return [w / max(table.speed(t, m) for m in models) if g else w
            for t, (w, g) in enumerate(zip(work, table.gpu))]


def critical_paths(table: WorkloadTable, work: Sequence[float], pool: Pool) -> list[float]:
    """Each job's longest chain, every task on its fastest device."""
    fast = fastest_runtimes(table, work, pool)
    finish = [0.0] * table.n_tasks
    out = []
    for j in range(table.n_jobs):
        longest = 0.0
        for t in table.tasks_of(j):  # parents come first
            f = fast[t] + max((finish[p] for p in table.parents[t]), default=0.0)
            finish[t] = f
            longest = max(longest, f)
        out.append(longest)
    return out


def makespan_lower_bound(table: WorkloadTable, work: Sequence[float], pool: Pool,
                         colocation_gain: float = 1.0) -> float:
    """See the module; ``colocation_gain``: the most a device's total
    throughput grows when two tasks share it, by the workload's measured
    co-location (1 where sharing never helps)."""
    if table.n_jobs == 0:
        return 0.0
    fast = fastest_runtimes(table, work, pool)
    cps = critical_paths(table, work, pool)
    first = min(j.arrival for j in table.jobs)
    bound = max(job.arrival + cp for job, cp in zip(table.jobs, cps)) - first
    suffix_work = 0.0
    for j in reversed(range(table.n_jobs)):  # jobs are sorted by arrival
        suffix_work += sum(fast[t] * table.gpus[t] for t in table.tasks_of(j) if table.gpu[t])
        bound = max(bound, table.jobs[j].arrival - first
                    + suffix_work / (len(pool) * colocation_gain))
    return bound


def measure(result: SimResult) -> Metrics:
    table, pool = result.table, result.pool
    arrival, finish = result.job_arrival, result.job_finish
    jct = [f - a for a, f in zip(arrival, finish)]
    weights = [j.priority for j in table.jobs]
    cps = critical_paths(table, result.work, pool)
    makespan = max(finish) - min(arrival)
    misses = sum(1 for job, c in zip(table.jobs, jct)
                 if job.deadline is not None and c > job.deadline + 1e-9)
    return Metrics(
        makespan=makespan,
        avg_jct=sum(jct) / len(jct),
        weighted_jct=sum(w * c for w, c in zip(weights, jct)) / sum(weights),
        slowdown=sum(c / cp if cp > 0 else 1.0 for c, cp in zip(jct, cps)) / len(jct),
        utilization=sum(result.busy) / (len(pool) * makespan) if makespan > 0 else 0.0,
        deadline_misses=misses,
        lower_bound=makespan_lower_bound(table, result.work, pool, result.colocation_gain),
        jct_lower_bound=sum(cps) / len(cps),
        failed_attempts=sum(1 for a in result.trace if not a.ok),
    )


def optimum_for(optimum: dict[int, tuple[float, float]], pool: Pool) -> float | None:
    """The proven optimum's lower value for this pool, where one applies: the
    instance ships it for this many identical reference devices."""
    models = {d.model.name for d in pool.devices}
    if len(models) != 1 or pool.devices[0].model.compute_speed != 1.0:
        return None
    value = optimum.get(len(pool))
    return None if value is None or math.isnan(value[0]) else value[0]
