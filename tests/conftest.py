"""Shared fixtures: the bundled workloads and a helper to run an episode."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlsched.evaluate import run_episode
from rlsched.metrics import measure
from rlsched.schedulers import make_scheduler

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "workloads"
STG = WORKLOADS / "stg"
WFCOMMONS = WORKLOADS / "wfcommons"


SEARCH_EVALUATIONS = 100


def simulate(instance, pool, scheduler="fifo", seed=0, perturbations=None):
    """Run one episode; return ``(SimResult, Metrics)``."""
    # the search schedulers get a budget counted in schedules: fast and deterministic
    sched = make_scheduler(scheduler, search_evaluations=SEARCH_EVALUATIONS)
    result = run_episode(instance, pool, sched, seed, perturbations)
    return result, measure(result)


@pytest.fixture(scope="session")
def stg_instances():
    from rlsched.sources.stg import load_stg

    return load_stg(STG)


@pytest.fixture(scope="session")
def wfcommons_instances():
    from rlsched.sources.wfcommons import load_wfcommons

    return load_wfcommons(WFCOMMONS)


def check_schedule(pool, result, m):
    """Assert the invariants every schedule must keep."""
    table = result.table
    ok = [a for a in result.trace if a.ok]
    # every task ran to completion exactly once
    assert sorted(a.task for a in ok) == list(range(table.n_tasks))
    start = {a.task: a.start for a in ok}
    end = {a.task: a.end for a in ok}
    for t, ps in enumerate(table.parents):
        # precedence: no task starts before its parents end, or before its job arrives
        assert all(start[t] >= end[p] - 1e-9 for p in ps)
        assert start[t] >= table.jobs[table.job_of[t]].arrival - 1e-9
    # no device is ever over its memory
    for d in pool.devices:
        runs = [a for a in result.trace if a.device == d.index]
        for a in runs:
            here = sum(table.memory[b.task] for b in runs if b.start <= a.start < b.end)
            assert here <= d.model.memory_gib + 1e-9
    # and nothing beats the lower bounds
    assert m.makespan >= m.lower_bound - 1e-6
    assert m.avg_jct >= m.jct_lower_bound - 1e-6
