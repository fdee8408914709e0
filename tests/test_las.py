"""``las``: Tiresias' discretised least attained service, which needs no
runtime. Cases worked out by hand on a fast RTX 4090 (device 0) beside a
slow RTX 3090 (device 1)."""

from __future__ import annotations

import numpy as np
import pytest

from rlsched.estimates import EstimateModel
from rlsched.pool import CATALOGUE, build_pool
from rlsched.schedulers.las import LasScheduler
from rlsched.sim import Simulator
from rlsched.workload import Instance, Job, Task
from tests.helpers import check_schedule, simulate

POOL = build_pool("mixed", [CATALOGUE["rtx-4090"], CATALOGUE["rtx-3090"]])
ONE = build_pool("one", [CATALOGUE["rtx-3090"]])


def starts(result) -> dict[str, float]:
    return {"/".join(result.table.task_ids[a.task]): a.start for a in result.trace if a.ok}


def test_queues_are_bounded_geometrically_and_the_last_is_open():
    las = LasScheduler(base=100.0, growth=10.0, queues=3)
    assert [las.queue(s) for s in (0.0, 99.9, 100.0, 999.0, 1000.0, 1e9)] == [0, 0, 1, 1, 2, 2]


def test_a_job_that_has_had_little_service_goes_before_one_that_has_had_much():
    # on one GPU: "big" arrives first and runs a 2,000 s task (past the first
    # queue's 600 s); "small" arrives at 1 s. When the GPU frees at 2,000 s,
    # each has one task ready: small's, with no service yet, goes first,
    # though big arrived earlier
    inst = Instance("two", (
        Job("big", (Task("a", 2000.0), Task("b", 100.0, parents=("a",))), arrival=0.0),
        Job("small", (Task("c", 100.0),), arrival=1.0)), source="test")
    result, m = simulate(inst, ONE, "las")
    check_schedule(ONE, result, m)
    s = starts(result)
    assert s["small/c"] == pytest.approx(2000.0)
    assert s["big/b"] == pytest.approx(2100.0)


def test_within_a_queue_the_job_that_arrived_first_goes_first():
    # both jobs stay under 600 s of service: FIFO by arrival, whatever the sizes
    inst = Instance("two", (
        Job("early", (Task("a", 10.0), Task("b", 300.0, parents=("a",))), arrival=0.0),
        Job("late", (Task("c", 5.0),), arrival=1.0)), source="test")
    result, _ = simulate(inst, ONE, "las")
    s = starts(result)
    assert s["early/b"] == pytest.approx(10.0)
    assert s["late/c"] == pytest.approx(310.0)


def test_a_task_takes_the_fastest_idle_gpu():
    inst = Instance("one", (Job("j", (Task("a", 100.0),)),), source="test")
    result, _ = simulate(inst, POOL, "las")
    assert result.trace[0].device == 0


def test_las_decides_the_same_whatever_the_estimates_say():
    inst = Instance("two", (
        Job("big", (Task("a", 2000.0, estimate=1.0), Task("b", 100.0, parents=("a",))),
            arrival=0.0),
        Job("small", (Task("c", 100.0, estimate=1e6),), arrival=1.0)), source="test")
    traces = []
    for spec in ("exact", "none", "noisy:2.0"):
        sim = Simulator(inst, POOL, seed=1, estimates=EstimateModel.parse(spec))
        las, view = LasScheduler(), sim.reset()
        while view is not None:
            view = sim.step(las.decide(view))
        traces.append(sim.result().trace)
    assert traces[0] == traces[1] == traces[2]


@pytest.mark.parametrize("workload, pool, seed", [
    ("synthetic:mixed?jobs=30", "preset:lab-8", 3),
    # a sweep's task ends past its job's bound while its siblings wait, ready
    # and untouched, and nothing else of the job runs: only the jobs that ran
    # at the last decision find it
    ("synthetic:sweep?jobs=20", "identical:2", 0),
    # gangs: a job's service grows by every device its gang holds
    ("synthetic:gangs?jobs=24&max_gpus=4", "identical:8", 2),
])
def test_the_order_kept_between_decisions_is_the_full_sort_at_every_decision(workload, pool, seed):
    # the queue of jobs is kept sorted across decisions and only the jobs
    # that ran, or whose ready tasks changed, are looked at again: at every
    # decision that reads it (not every decision does: with no idle device
    # none does), it must be the sort of the whole ready set
    from rlsched.arrivals import online
    from rlsched.perturbations import Perturbations
    from rlsched.sources.specs import resolve_pool, resolve_workload

    pool = resolve_pool(pool)
    instances = resolve_workload(workload).instances(seed)
    inst = online(instances, pool, 0.9, np.random.default_rng(seed))
    sim = Simulator(inst, pool, seed=seed, perturbations=Perturbations.parse("all"))
    las = LasScheduler(base=60.0)
    kept_order = las.order
    checked, queues = 0, set()

    def order(view):
        nonlocal checked
        attained, jobs = view.job_attained, view.table.jobs
        key = {j: (las.queue(attained[j]), jobs[j].arrival) for j in range(view.table.n_jobs)}
        job_of = view.table.job_of
        full = sorted(view.ready, key=lambda t: (*key[job_of[t]], t))
        kept = list(kept_order(view))
        assert kept == full
        checked += 1
        queues.update(k for k, _ in key.values())
        return iter(kept)

    las.order = order
    view, decisions = sim.reset(), 0
    while view is not None:
        view = sim.step(las.decide(view))
        decisions += 1
    assert checked > 100 and decisions > checked  # some decisions never read the order
    assert len(queues) >= 3  # jobs crossed queue bounds while queued


def test_one_jobs_service_read_alone_is_its_sum_over_every_running_attempt():
    """The simulator keeps its running tasks by job, so one job's attained
    service is read without summing every job's: the same float as the sum
    over all, and the devices it holds are its entries among the running,
    through gangs, CPU-only tasks and failed attempts."""
    from rlsched.arrivals import online
    from rlsched.perturbations import Perturbations
    from rlsched.sources.specs import resolve_pool, resolve_workload

    pool = resolve_pool("identical:8")
    instances = resolve_workload("synthetic:gangs?jobs=20&max_gpus=4").instances(1)
    inst = online(instances, pool, 1.2, np.random.default_rng(1))
    often = Perturbations.parse("all")
    sim = Simulator(inst, pool, seed=1, perturbations=often)
    las, view = LasScheduler(base=60.0), sim.reset()
    checked = gangs = 0
    while view is not None:
        service = view.job_attained
        assert service.per_job
        jobs = range(view.table.n_jobs)
        alone = [service.of(j) for j in jobs]  # read before anything sums them all
        held = [service.holding(j) for j in jobs]
        assert service[-1] == alone[-1]  # (a negative index counts from the end, as a tuple's)
        job_of = view.table.job_of
        assert alone == list(service)
        assert held == [sum(1 for r in view.running if r.device >= 0 and job_of[r.task] == j)
                        for j in jobs]
        checked += 1
        gangs += any(h > 1 for h in held)
        view = sim.step(las.decide(view))
    assert checked > 50 and gangs > 10
    assert any(not a.ok for a in sim.trace), "no attempt failed: the perturbations did not bite"
