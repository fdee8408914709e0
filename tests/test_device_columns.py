"""The per-device columns ``share`` keeps between decisions (memory free,
tasks, clock ratio, seconds until free) are, at every decision, those read
afresh from the view: through throttling, outside load, failures, gangs and
re-predictions, and for views of a producer that builds new samples each
time (as the live daemon does)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rlsched.arrivals import batch, poisson
from rlsched.estimates import EstimateModel
from rlsched.perturbations import Perturbations
from rlsched.pool import identical_pool, preset_pool
from rlsched.schedulers import make_scheduler
from rlsched.schedulers.base import runtimes
from rlsched.schedulers.device_columns import DeviceColumns
from rlsched.sim import Simulator
from rlsched.sources.synthetic import generate
from rlsched.view import ClusterView
from tests.helpers import python_source


def _afresh(view: ClusterView) -> tuple[list[float], list[int], list[float], list[float]]:
    """The columns by their definitions, read from every device and running task."""
    free = [d.memory_total - d.memory_used if d.healthy else -1.0 for d in view.devices]
    count = [d.n_tasks for d in view.devices]
    clocks = [(d.sm_clock_mhz / d.max_sm_clock_mhz if d.max_sm_clock_mhz else 0.0) or 1.0
              for d in view.devices]
    runtime = runtimes(view, clocks)
    until_free = [0.0] * len(view.devices)
    for r in view.running:
        if r.device >= 0:
            left = r.start + runtime(r.task, r.device) - view.time
            until_free[r.device] = max(until_free[r.device], left, 1.0)
    return free, count, clocks, until_free


def _episode(workload: str, pool_name: str):
    """An online episode of ``share`` with every perturbation, often, and the
    default estimates (so beliefs move while tasks run)."""
    generator, jobs = {"layered": ("layered", "12"), "gangs": ("gangs", "16")}[workload]
    instance = generate(generator, {"jobs": jobs}, 3, "test")
    pool = preset_pool(pool_name) if pool_name.startswith("workstation") else \
        identical_pool(int(pool_name.split(":")[1]))
    instance = poisson(instance.jobs, pool, 0.9, np.random.default_rng(3)) \
        if workload == "layered" else batch(instance)
    # failures often enough to bite, but not so often that a long gang never ends
    often = replace(Perturbations.parse("all"), throttle_every=300.0, throttle_for=200.0,
                    external_every=400.0, fail_every=900.0 if workload == "layered" else 20000.0,
                    fail_for=100.0)
    sim = Simulator(instance, pool, 3, often, EstimateModel.parse("default"))
    return sim, make_scheduler("share")


@pytest.mark.parametrize("workload, pool", [("layered", "workstation-4"),
                                            ("gangs", "identical:8")])
def test_the_columns_kept_between_decisions_are_those_read_afresh(workload, pool,
                                                                   monkeypatch) -> None:
    sim, share = _episode(workload, pool)
    # the kept columns run from source, to count their passes over every running task
    kept_columns = python_source("rlsched.schedulers.device_columns").DeviceColumns
    read_all = kept_columns._read_all_ends
    full_passes = 0

    def counted(self, view: ClusterView) -> None:
        nonlocal full_passes
        full_passes += 1
        read_all(self, view)

    monkeypatch.setattr(kept_columns, "_read_all_ends", counted)
    kept, rebuilt = kept_columns(), DeviceColumns()
    view = sim.reset()
    decisions = reused = partial = 0
    last, knowledge = None, view.open_knowledge
    while view is not None:
        expected = _afresh(view)
        before = full_passes
        assert kept.read(view) == expected
        if last is not None and view.open_knowledge != knowledge and \
                any(a is b for a, b in zip(view.devices, last)):
            # predictions moved, and some device kept its sample: only the
            # running tasks of the kinds re-predicted are read again
            assert full_passes == before
            partial += 1
        knowledge = view.open_knowledge
        # a producer whose every sample is new (the live daemon's views)
        fresh = view._replace(devices=tuple(d._replace() for d in view.devices))
        assert rebuilt.read(fresh) == expected
        if last is not None:
            reused += sum(a is b for a, b in zip(view.devices, last))
        last = view.devices
        decisions += 1
        view = sim.step(share.decide(view))
    assert decisions > 50
    assert reused > decisions  # most samples were kept: the incremental path ran
    assert partial > 20
    assert any(not a.ok for a in sim.trace), "no task was lost to a failure: the perturbations did not bite"
