"""``share``: shortest remaining job first, each task on the device where it
finishes first, short tasks sharing busy GPUs. Cases small enough to work out
by hand, on a fast RTX 4090 (device 0) beside a slow RTX 3090 (device 1)."""

from __future__ import annotations

import pytest

from rlsched.pool import CATALOGUE, build_pool
from rlsched.workload import Instance, Job, Task
from tests.helpers import simulate

POOL = build_pool("mixed", [CATALOGUE["rtx-4090"], CATALOGUE["rtx-3090"]])
FAST = CATALOGUE["rtx-4090"].compute_speed


def two_jobs(first_work: float, second_work: float) -> Instance:
    """A job of one task at time 0, and another at time 1 while the first runs."""
    return Instance("pair", (Job("first", (Task("a", first_work),), arrival=0.0),
                             Job("second", (Task("b", second_work),), arrival=1.0)),
                    source="test")


def test_a_long_task_waits_for_the_fast_gpu_when_it_finishes_clearly_sooner_there():
    # the 4090 is free at 100 s; 3000 s of work ends there at about 1400 s,
    # on the idle 3090 only at 3001 s
    result, _ = simulate(two_jobs(100.0 * FAST, 3000.0), POOL, "share")
    b = next(a for a in result.trace if result.table.task_ids[a.task][1] == "b")
    assert b.device == 0
    assert b.start == pytest.approx(100.0)
    assert b.end == pytest.approx(100.0 + 3000.0 / FAST)


def test_a_task_takes_the_idle_slow_gpu_when_waiting_would_finish_later():
    # the 4090 is busy until 1000 s; 300 s of work ends on the 3090 at 301 s
    result, _ = simulate(two_jobs(1000.0 * FAST, 300.0), POOL, "share")
    b = next(a for a in result.trace if result.table.task_ids[a.task][1] == "b")
    assert (b.device, b.start) == (1, pytest.approx(1.0))


def test_the_job_with_least_remaining_work_goes_first():
    small = Job("small", (Task("s", 10.0),), arrival=0.0)
    big = Job("big", (Task("g", 1000.0),), arrival=0.0)
    one_gpu = build_pool("one", [CATALOGUE["rtx-3090"]])
    result, _ = simulate(Instance("two", (big, small), source="test"), one_gpu, "share")
    assert [result.table.task_ids[a.task][1] for a in result.trace] == ["s", "g"]


@pytest.mark.parametrize("patience", [1.1, 2.0])
def test_on_alike_devices_the_earliest_finish_is_the_full_scan_s_answer(patience):
    # the shortcut for one model, one clock, all healthy (the first idle
    # device with room, else the least busy time) against the scan of every
    # device, over random states full of ties, held devices, idle ones
    # without room, and a task of no work at all
    import random

    from rlsched.pool import identical_pool
    from rlsched.schedulers.base import runtimes
    from rlsched.sim import Simulator
    from tests.helpers import python_source

    class AllowsAll:  # a reservation that forbids nothing: takes the full scan
        task = -1

        def allows(self, view, task, device):
            return True

    jobs = tuple(Job(f"j{i}", (Task("t", 10.0 * i, gpu_memory=4.0 * (i % 5)),)) for i in range(6))
    view = Simulator(Instance("six", jobs), identical_pool(8)).reset()
    assert 0.0 in view.predicted
    # (from its source: a compiled share's methods cannot be spied on, nor
    # handed a stand-in reservation)
    share = python_source("rlsched.schedulers.share").ShareScheduler(patience=patience)
    _, _, clocks, _ = share._columns.read(view)
    runtime = runtimes(view, clocks)
    shortcut = share._earliest_finish_alike
    answers = []
    share._earliest_finish_alike = lambda *a: answers.append(shortcut(*a)) or answers[-1]
    rng = random.Random(7)
    for _ in range(3000):
        count = [rng.choice((0, 0, 1, 2, 3)) for _ in range(8)]
        until = [rng.choice((1.0, 2.5, 2.5, 40.0)) if c else rng.choice((0.0, 0.0, 11.0))
                 for c in count]
        room = [rng.choice((24.0, 24.0, 3.0, 0.0)) if c == 0 and u == 0.0 else rng.choice(
            (24.0, 8.0, 0.0)) for c, u in zip(count, until)]
        task = rng.randrange(len(jobs))
        expected = share._earliest_finish(view, task, until, count, room, runtime, AllowsAll())
        got = share._earliest_finish(view, task, until, count, room, runtime, None)
        assert got == expected, (task, count, until, room)
    assert len(answers) == 3000  # the shortcut was the one answering
    assert set(answers) == set(range(8))  # each device was the answer somewhere


def test_with_no_device_at_all_share_places_nothing():
    # a cluster whose every node has left: a view with no devices
    from rlsched.pool import Pool, identical_pool
    from rlsched.schedulers import make_scheduler
    from rlsched.sim import Simulator

    view = Simulator(Instance("one", (Job("j", (Task("t", 10.0, gpu_memory=4.0),)),)),
                     identical_pool(2)).reset()
    empty = view._replace(pool=Pool("none", ()), devices=(), running=())
    assert make_scheduler("share").decide(empty) == []


@pytest.mark.parametrize("pool_spec, wide_from", [("identical:40", 32), ("preset:lab-8", 2)])
def test_passing_over_tasks_no_open_device_takes_gives_the_schedule_of_the_full_scan(
        pool_spec, wide_from, monkeypatch) -> None:
    """The sharing pass asks :class:`OpenDevices` whether any busy device
    could take a task before scanning them all: a Poisson stream with
    failures, throttling and outside load, on alike and on mixed GPUs, gets
    the trace it gets with every device scanned for every task."""
    import numpy as np

    from rlsched.arrivals import poisson
    from rlsched.estimates import EstimateModel
    from rlsched.perturbations import Perturbations
    from rlsched.sim import Simulator
    from rlsched.sources.specs import resolve_pool
    from rlsched.sources.synthetic import generate
    from tests.helpers import python_source

    # (from its source: a compiled share's calls go past the patches)
    share_module = python_source("rlsched.schedulers.share")

    asked = []
    none_takes = share_module.OpenDevices.none_takes

    def counted(self, floor, memory):
        asked.append(none_takes(self, floor, memory))
        return asked[-1]

    monkeypatch.setattr(share_module.OpenDevices, "none_takes", counted)

    def trace(scan_from: int):
        monkeypatch.setattr(share_module, "WIDE_SCAN", scan_from)
        pool = resolve_pool(pool_spec)
        instance = generate("layered", {"jobs": "40"}, 3, "test")
        instance = poisson(instance.jobs, pool, 0.95, np.random.default_rng(3))
        sim = Simulator(instance, pool, 3, Perturbations.parse("all"),
                        EstimateModel.parse("default"))
        share = share_module.ShareScheduler()
        view = sim.reset()
        while view is not None:
            view = sim.step(share.decide(view))
        return sim.trace

    kept = trace(wide_from)
    assert True in asked and False in asked  # tasks passed over, and tasks scanned
    asked.clear()
    assert kept == trace(10**9)
    assert not asked  # the full scan everywhere
