"""Arrival processes make batch and online workloads from any set of DAGs."""

from __future__ import annotations

import numpy as np
import pytest

from rlsched.arrivals import batch, job_device_seconds, poisson
from rlsched.pool import preset_pool
from rlsched.sources.synthetic import generate


def test_batch_puts_every_job_at_time_zero():
    inst = generate("sweep", {"jobs": "5"}, 0, "s")
    inst = poisson(list(inst.jobs), preset_pool("workstation-4"), 0.5, np.random.default_rng(0))
    assert {j.arrival for j in batch(inst).jobs} == {0.0}


def test_poisson_offers_the_target_load():
    pool = preset_pool("workstation-4")
    jobs = list(generate("sweep", {"jobs": "400"}, 1, "s").jobs)
    inst = poisson(jobs, pool, 0.85, np.random.default_rng(3))
    arrivals = [j.arrival for j in inst.jobs]
    assert arrivals == sorted(arrivals) and arrivals[0] == 0.0
    offered = sum(job_device_seconds(j, pool) for j in inst.jobs) / (arrivals[-1] * len(pool))
    assert offered == pytest.approx(0.85, rel=0.15)


def test_poisson_is_deterministic_under_its_generator():
    jobs = list(generate("sweep", {"jobs": "10"}, 1, "s").jobs)
    pool = preset_pool("workstation-4")
    a = poisson(jobs, pool, 0.85, np.random.default_rng(5))
    b = poisson(jobs, pool, 0.85, np.random.default_rng(5))
    c = poisson(jobs, pool, 0.85, np.random.default_rng(6))
    assert a == b and a != c
