"""Rewards, each normalised by a lower bound so that returns are ratios.

The time-integral of the jobs in the system over ``[t0, t1]`` is the sum,
over jobs, of the overlap of ``[arrival, finish]`` with that interval; summed
over an episode it is the sum of job completion times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rlsched.metrics import critical_paths, makespan_lower_bound
from rlsched.pool import Pool
from rlsched.table import WorkloadTable

REWARDS = ("jct", "weighted_jct", "makespan")


class RewardMeter:
    """Turns the simulator's progress between two decisions into a reward.

    :param name: one of :data:`REWARDS`
    :param work: the true work of each task (the bounds read it; the policy never does)
    """

    def __init__(self, name: str, table: WorkloadTable, work: Sequence[float], pool: Pool) -> None:
        self.name = name
        self.arrival = np.array([j.arrival for j in table.jobs])
        cps = np.array(critical_paths(table, work, pool))
        if name == "weighted_jct":
            self.weight = np.array([j.priority for j in table.jobs])
        else:
            self.weight = np.ones(len(table.jobs))
        if name == "makespan":
            self.norm = max(makespan_lower_bound(table, work, pool), 1e-9)
        else:
            self.norm = max(float((self.weight * cps).sum()), 1e-9)

    def reward(self, t0: float, t1: float, job_finish: list[float],
               makespan: float = math.inf) -> float:
        """The reward of ``[t0, t1]`` for a run whose jobs finish at
        ``job_finish`` (NaN: not yet) and which ends at ``makespan`` (the
        makespan reward counts time only until then; ``t1`` may be inf for a
        finished run)."""
        t1 = min(t1, makespan) if self.name == "makespan" else t1
        if t1 <= t0:
            return 0.0
        if self.name == "makespan":
            return -(t1 - t0) / self.norm
        finish = np.asarray(job_finish)
        finish = np.where(finish != finish, np.inf, finish)  # not yet finished: never
        overlap = np.minimum(finish, t1) - np.maximum(self.arrival, t0)
        return -float((self.weight * np.clip(overlap, 0.0, None)).sum()) / self.norm
