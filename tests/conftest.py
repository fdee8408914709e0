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


def simulate(instance, pool, scheduler="fifo", seed=0, perturbations=None):
    """Run one episode; return ``(SimResult, Metrics)``."""
    result = run_episode(instance, pool, make_scheduler(scheduler), seed, perturbations)
    return result, measure(result)


@pytest.fixture(scope="session")
def stg_instances():
    from rlsched.sources.stg import load_stg

    return load_stg(STG)


@pytest.fixture(scope="session")
def wfcommons_instances():
    from rlsched.sources.wfcommons import load_wfcommons

    return load_wfcommons(WFCOMMONS)
