"""Invariants of every schedule, over random DAGs, pools and schedulers."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlsched.estimates import EstimateModel
from rlsched.perturbations import Perturbations
from rlsched.pool import CATALOGUE, build_pool
from rlsched.schedulers import SCHEDULERS, make_scheduler
from rlsched.sim import Simulator
from rlsched.workload import Instance, Job, Task
from tests.helpers import check_schedule, simulate

MODELS = sorted(CATALOGUE)
#: a task may need all the memory of the smallest card, so that every drawn pool can run it
SMALLEST_GIB = min(m.memory_gib for m in CATALOGUE.values())
#: perturbations come at intervals long beside the longest task on the slowest card (50 reference
#: seconds on a K80 take about 575 s): a device that fails every 40 s never finishes such a task,
#: and the episode never ends
SLOWEST = min(min(m.compute_speed, m.memory_speed) for m in CATALOGUE.values())
CLOCK = 1.0 / SLOWEST


@st.composite
def workloads(draw):
    n_jobs = draw(st.integers(1, 3))
    jobs = []
    for j in range(n_jobs):
        n = draw(st.integers(1, 12))
        tasks = []
        for i in range(n):
            parents = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
            tasks.append(Task(
                id=f"t{i}", work=draw(st.floats(0.0, 50.0)),
                kind=draw(st.sampled_from(["compute", "memory"])),
                gpu_memory=draw(st.sampled_from([0.0, 1.0, 4.0, SMALLEST_GIB / 2, SMALLEST_GIB])),
                gpus=draw(st.sampled_from([1, 1, 1, 0, 2, 3])),
                parents=tuple(f"t{p}" for p in sorted(parents))))
        jobs.append(Job(f"j{j}", tuple(tasks), arrival=draw(st.floats(0.0, 100.0)),
                        priority=draw(st.sampled_from([1.0, 2.0]))))
    return Instance("random", tuple(jobs), source="hypothesis")


def gangs_within(inst: Instance, pool) -> Instance:
    """The instance with each gang cut to the pool's size, so that every one can start."""
    return replace(inst, jobs=tuple(
        replace(job, tasks=tuple(replace(t, gpus=min(t.gpus, len(pool))) for t in job.tasks))
        for job in inst.jobs))


pools = st.lists(st.sampled_from(MODELS), min_size=1, max_size=4).map(
    lambda ms: build_pool("random", [CATALOGUE[m] for m in ms]))
perturbations = st.sampled_from([
    Perturbations(),
    Perturbations(throttle=True, external=True, failures=True, throttle_every=20.0 * CLOCK,
                  throttle_for=10.0 * CLOCK, external_every=20.0 * CLOCK, external_for=10.0 * CLOCK,
                  fail_every=40.0 * CLOCK, fail_for=5.0 * CLOCK),
])
#: derandomised, so that CI runs the same examples every time: a failure seen once is seen again
common = settings(max_examples=60, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])


@common
@given(inst=workloads(), pool=pools, perturb=perturbations,
       scheduler=st.sampled_from(sorted(SCHEDULERS)), seed=st.integers(0, 2**16))
def test_every_schedule_respects_precedence_memory_and_bounds(inst, pool, perturb, scheduler,
                                                              seed):
    inst = gangs_within(inst, pool)
    result, m = simulate(inst, pool, scheduler, seed, perturb)
    check_schedule(pool, result, m)


@common
@given(inst=workloads(), pool=pools, perturb=perturbations,
       scheduler=st.sampled_from(sorted(SCHEDULERS)), seed=st.integers(0, 2**16))
def test_the_same_seed_gives_the_same_trace(inst, pool, perturb, scheduler, seed):
    inst = gangs_within(inst, pool)
    first, _ = simulate(inst, pool, scheduler, seed, perturb)
    second, _ = simulate(inst, pool, scheduler, seed, perturb)
    assert first.trace == second.trace


@common
@given(inst=workloads(), pool=pools, perturb=perturbations,
       scheduler=st.sampled_from(sorted(n for n, make in SCHEDULERS.items() if make().idle_only)),
       seed=st.integers(0, 2**16))
def test_skipping_the_points_where_an_idle_only_scheduler_would_wait_changes_no_schedule(
        inst, pool, perturb, scheduler, seed):
    inst = gangs_within(inst, pool)
    traces = []
    for idle_only in (False, True):
        sched = make_scheduler(scheduler)
        sched.reset(seed)
        sim = Simulator(inst, pool, seed, perturb, EstimateModel.parse("default"),
                        idle_only=idle_only)
        view = sim.reset()
        while view is not None:
            view = sim.step(sched.decide(view))
        traces.append(sim.result().trace)
    assert traces[0] == traces[1]
