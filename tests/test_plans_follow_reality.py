"""A planning scheduler follows what really happens, not the estimates its
plan was drawn on: a device freed early, or one left waiting for a task that
runs late elsewhere, takes a ready task at once; a plan that reality keeps to
is followed as drawn."""

from __future__ import annotations

from rlsched.arrivals import batch
from rlsched.estimates import EstimateModel
from rlsched.pool import identical_pool
from rlsched.schedulers import make_scheduler
from rlsched.sim import Simulator
from rlsched.workload import Instance, Job, Task


def three_jobs(x_runtime: float) -> Instance:
    """x is estimated at 10 s, y at 4 and z at 6 (both exact). On two GPUs
    HEFT plans x on GPU 0 and z on GPU 1, then y on GPU 1 after z (at 6 it
    ends at 10, sooner than after x on GPU 0 at 14)."""
    return batch(Instance("three", (
        Job("a", (Task("x", x_runtime, estimate=10.0, gpu_memory=1.0),)),
        Job("b", (Task("y", 4.0, estimate=4.0, gpu_memory=1.0),)),
        Job("c", (Task("z", 6.0, estimate=6.0, gpu_memory=1.0),)))))


def four_jobs(x_runtime: float) -> Instance:
    """x estimated at 10 s, z at 6, y at 5 and w at 4 (the three exact). On
    two GPUs HEFT plans x on GPU 0, z then y on GPU 1 (y from 6 to 11), and
    w on GPU 0 after x (from 10 to 14, sooner than after y)."""
    return batch(Instance("four", (
        Job("a", (Task("x", x_runtime, estimate=10.0, gpu_memory=1.0),)),
        Job("b", (Task("y", 5.0, estimate=5.0, gpu_memory=1.0),)),
        Job("c", (Task("z", 6.0, estimate=6.0, gpu_memory=1.0),)),
        Job("d", (Task("w", 4.0, estimate=4.0, gpu_memory=1.0),)))))


def run(instance: Instance, name: str):
    sim = Simulator(instance, identical_pool(2), estimates=EstimateModel.parse("noisy:0"))
    scheduler = make_scheduler(name)
    scheduler.reset(0)
    view = sim.reset()
    while view is not None:
        view = sim.step(scheduler.decide(view))
    return {sim.table.task_ids[a.task][1]: (a.device, a.start) for a in sim.trace}, scheduler


def test_heft_given_a_task_ending_at_half_its_estimate_starts_the_next_ready_task_on_its_gpu():
    starts, heft = run(three_jobs(x_runtime=5.0), "heft")
    assert starts["x"][1] == 0.0
    assert starts["y"] == (starts["x"][0], 5.0)  # not at 6, after z, as first planned


def test_heft_given_a_task_running_past_its_plan_moves_what_waits_for_its_gpu():
    starts, heft = run(four_jobs(x_runtime=20.0), "heft")
    assert starts["y"] == (starts["z"][0], 6.0)
    assert starts["w"] == (starts["y"][0], 11.0)  # when y ends: not after x, at 20


def test_a_plan_that_reality_keeps_to_is_followed_as_drawn():
    """(ga and sa follow their plans by the same rules as heft.)"""
    for x_runtime in (10.0, 10.4):  # exact, and late by less than 5% of its plan
        starts, heft = run(four_jobs(x_runtime), "heft")
        assert starts["y"] == (starts["z"][0], 6.0)
        assert starts["w"] == (starts["x"][0], x_runtime)
        assert heft.plans == 1
