"""What a scheduler keeps between decisions so that a decision on a wide
pool reads the devices that changed, not every device, is at every
decision what a fresh read of every device gives: the idle devices' classes
of the greedy schedulers, the simulator's idle set, the planners' world key.
Through throttling, outside load and failures, on pools of several models,
and for views of a producer that builds new samples each time (as the live
daemon does)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rlsched.arrivals import poisson
from rlsched.estimates import EstimateModel
from rlsched.perturbations import Perturbations
from rlsched.pool import identical_pool, preset_pool
from rlsched.schedulers import make_scheduler
from rlsched.schedulers.base import device_classes, pool_models
from rlsched.schedulers.idle_classes import IdleClasses
from rlsched.sim import Simulator
from rlsched.sources.synthetic import generate
from rlsched.view import ClusterView
from tests.helpers import python_source


def _afresh(view: ClusterView) -> tuple[int, dict[tuple, list[int]]]:
    idle = [d.index for d in view.devices if d.healthy and d.n_tasks == 0]
    free = {d: view.devices[d].memory_total - view.devices[d].memory_used for d in idle}
    return len(idle), device_classes(view, idle, free)


@pytest.mark.parametrize("scheduler, pool", [("fifo", "lab-8"), ("sjf", "identical:16")])
def test_the_classes_kept_between_decisions_are_those_grouped_afresh(scheduler, pool) -> None:
    instance = generate("layered", {"jobs": "12"}, 5, "test")
    the_pool = preset_pool(pool) if pool == "lab-8" else identical_pool(16)
    instance = poisson(instance.jobs, the_pool, 0.9, np.random.default_rng(5))
    often = replace(Perturbations.parse("all"), throttle_every=300.0, throttle_for=200.0,
                    external_every=400.0, fail_every=900.0, fail_for=100.0)
    sim = Simulator(instance, the_pool, 5, often, EstimateModel.parse("default"))
    greedy = make_scheduler(scheduler)
    kept, rebuilt = IdleClasses(), IdleClasses()
    models = pool_models(the_pool)
    view = sim.reset()
    decisions = reused = several = 0
    last = None
    while view is not None:
        expected = _afresh(view)
        assert kept.read(view, models) == expected
        fresh = view._replace(devices=tuple(d._replace() for d in view.devices))
        assert rebuilt.read(fresh, models) == expected
        several += len(expected[1]) > 1
        if last is not None:
            reused += sum(a is b for a, b in zip(view.devices, last))
        last = view.devices
        decisions += 1
        view = sim.step(greedy.decide(view))
    assert decisions > 50
    assert reused > decisions  # most samples were kept: the incremental path ran
    assert several > 10  # classes split by model, memory or clock, not one class throughout
    assert any(not a.ok for a in sim.trace), "no task was lost to a failure: the perturbations did not bite"


@pytest.mark.parametrize("scheduler", ["fifo", "sjf", "cp", "las", "tetris"])
def test_on_a_wide_pool_kept_idle_devices_give_the_schedule_of_a_pass_over_every_device(
        scheduler, monkeypatch) -> None:
    """Failures, throttling and outside load on 40 GPUs: the simulator's and
    the scheduler's kept idle devices (from 32 GPUs up) give the trace that
    reading every device at every decision gives."""
    import rlsched.schedulers.base as base
    import rlsched.sim as sim_module

    def trace(wide_from: int):
        for module in (sim_module, base):
            monkeypatch.setattr(module, "WIDE_POOL", wide_from)
        pool = identical_pool(40)
        instance = generate("layered", {"jobs": "30"}, 8, "test")
        instance = poisson(instance.jobs, pool, 0.95, np.random.default_rng(8))
        often = replace(Perturbations.parse("all"), throttle_every=200.0, throttle_for=200.0,
                        external_every=300.0, fail_every=600.0, fail_for=100.0)
        sim = Simulator(instance, pool, 8, often, EstimateModel.parse("default"), idle_only=True)
        greedy = make_scheduler(scheduler)
        view, views = sim.reset(), 0
        while view is not None:
            views += 1
            view = sim.step(greedy.decide(view))
        assert sim._wide == (wide_from <= 40)
        return sim.trace, views

    kept, views = trace(32)
    assert (kept, views) == trace(10**9)  # the same decision points, too
    assert any(not a.ok for a in kept), "no task was lost to a failure: the perturbations did not bite"


@pytest.mark.parametrize("pool", ["lab-8", "identical:40"])
def test_the_plan_key_kept_between_decisions_is_the_one_read_afresh(pool) -> None:
    """A planning scheduler redraws its plan when the world key changes; the
    key it keeps (each device's entry re-read only where its sample is new)
    is at every decision the one read from every device."""
    from rlsched.schedulers.plan import WorldKey, world_key

    the_pool = preset_pool(pool) if pool == "lab-8" else identical_pool(40)
    instance = generate("layered", {"jobs": "12"}, 6, "test")
    instance = poisson(instance.jobs, the_pool, 0.9, np.random.default_rng(6))
    often = replace(Perturbations.parse("all"), throttle_every=300.0, throttle_for=200.0,
                    external_every=400.0, fail_every=900.0, fail_for=100.0)
    sim = Simulator(instance, the_pool, 6, often, EstimateModel.parse("default"))
    heft = make_scheduler("heft")
    kept, rebuilt = WorldKey(), WorldKey()
    view, decisions, moved, last = sim.reset(), 0, 0, None
    while view is not None:
        expected = world_key(view)
        assert kept(view) == expected
        assert rebuilt(view._replace(devices=tuple(d._replace() for d in view.devices))) == expected
        moved += last is not None and expected != last
        last = expected
        decisions += 1
        view = sim.step(heft.decide(view))
    assert decisions > 50 and moved > 10
    assert any(not a.ok for a in sim.trace), "no task was lost to a failure: the perturbations did not bite"


def test_a_view_of_another_pool_is_grouped_afresh() -> None:
    """The same telemetry with another pool (other models) is another grouping."""
    pool = identical_pool(40)
    instance = generate("layered", {"jobs": "2"}, 1, "test")
    view = Simulator(instance, pool, 1, idle_only=True).reset()
    kept = IdleClasses()
    kept.read(view, pool_models(pool))
    faster = identical_pool(40, "a100-80gb")
    other = view._replace(pool=faster)
    assert kept.read(other, pool_models(faster)) == _afresh(other)
    assert next(iter(kept.read(other, pool_models(faster))[1]))[0][0] == "a100-80gb"


@pytest.mark.parametrize("scheduler, jobs", [("share", 30), ("random", 30), ("heft", 12)])
def test_the_most_memory_free_kept_between_calls_is_the_pass_over_every_device(
        scheduler, jobs, monkeypatch) -> None:
    """A scheduler that shares is asked before every decision whether any
    device has memory for a ready task; the most memory free, kept in a heap
    from the devices that changed, is at every call the maximum over every
    device, under outside memory, throttling and failures on 40 GPUs, in the
    episode and in twins forked from it (with weather of their own)."""
    pool = identical_pool(40)
    # (heft plans every ready task on every device: fewer jobs keep it short)
    instance = generate("layered", {"jobs": str(jobs)}, 4, "test")
    instance = poisson(instance.jobs, pool, 0.95, np.random.default_rng(4))
    often = replace(Perturbations.parse("all"), throttle_every=200.0, throttle_for=200.0,
                    external_every=60.0, fail_every=4000.0, fail_for=30.0)
    # (the simulator from its Python source: a compiled one's methods cannot be spied on)
    source_simulator = python_source("rlsched.sim").Simulator
    sim = source_simulator(instance, pool, 4, often, EstimateModel.parse("default"))
    kept = source_simulator._most_free
    answers: list[tuple[bool, float]] = []  # (asked of a twin, the answer)

    def checked(self) -> float:
        answer = kept(self)
        assert answer == max(self._free(d) for d in range(len(pool)))
        answers.append((self is not sim, answer))
        return answer

    monkeypatch.setattr(source_simulator, "_most_free", checked)
    sched = make_scheduler(scheduler)
    view, steps = sim.reset(), 0
    while view is not None:
        if steps % 60 == 30:  # a twin keeps a heap of its own
            twin = sim.fork(weather=steps)
            twin_view, twin_sched = twin._view(), make_scheduler(scheduler)
            for _ in range(40):
                if twin_view is None:
                    break
                twin_view = twin.step(twin_sched.decide(twin_view))
        view = sim.step(sched.decide(view))
        steps += 1
    ours = [a for twin, a in answers if not twin]
    assert len(ours) > 100 and len(set(ours)) > 10  # asked often, about a changing pool
    assert sum(twin for twin, _ in answers) > 20
    assert any(not a.ok for a in sim.trace), "no task was lost to a failure: the perturbations did not bite"
