"""``share`` bets once on a kind it knows nothing about: while the first run
of a kind with no finished run goes on, that kind's tasks in other jobs wait
behind the jobs that do not hang on that run, and take only the devices
nothing else wants. Cases on identical GPUs, every task queued at once, no estimates."""

from __future__ import annotations

from rlsched.estimates import EstimateModel
from rlsched.pool import identical_pool
from rlsched.runtime_model import RuntimeModel
from rlsched.schedulers.share import ShareScheduler
from rlsched.sim import Simulator
from rlsched.view import EVERY_KIND
from rlsched.workload import Instance, Job, Task

NONE = EstimateModel("none")


def queue(*jobs: tuple[str, tuple[tuple[str, float, str], ...]]) -> Instance:
    """Jobs all queued at 0: ``(name, ((task, work, category), ...))``."""
    return Instance("q", tuple(Job(name, tuple(Task(t, work, gpu_memory=1.0, category=c)
                                               for t, work, c in tasks))
                               for name, tasks in jobs), source="test")


def first_starts(instance: Instance, gpus: int, scheduler: ShareScheduler,
                 estimates: EstimateModel = NONE, history: RuntimeModel | None = None
                 ) -> set[str]:
    """The jobs whose tasks start at time 0."""
    sim = Simulator(instance, identical_pool(gpus), estimates=estimates, history=history)
    view = sim.reset()
    placements = scheduler.decide(view)
    return {sim.table.task_ids[p.task][0] for p in placements}


# two sweeps of an unknown script, and one job of another unknown one
SWEEPS = queue(("sweep-0", (("run", 300.0, "sweep"),)), ("sweep-1", (("run", 300.0, "sweep"),)),
               ("eval-0", (("run", 50.0, "eval"),)))


def test_a_second_run_of_an_unknown_kind_waits_for_the_first():
    assert first_starts(SWEEPS, 2, ShareScheduler()) == {"sweep-0", "eval-0"}


def test_without_the_rule_both_runs_of_the_unknown_kind_start():
    assert first_starts(SWEEPS, 2, ShareScheduler(probe=False)) == {"sweep-0", "sweep-1"}


def test_a_held_back_task_still_takes_a_device_nothing_else_wants():
    assert first_starts(SWEEPS, 3, ShareScheduler()) == {"sweep-0", "sweep-1", "eval-0"}


def test_a_kind_known_from_history_is_not_held_back():
    history = RuntimeModel()
    history.observe("sweep", None, 280.0)
    assert first_starts(SWEEPS, 2, ShareScheduler(), history=history) == {"sweep-0", "sweep-1"}


def test_a_jobs_own_tasks_of_one_unknown_kind_are_not_held_back():
    # fan has the least work left (two tasks to other's three), so both its
    # tasks of one unknown kind start
    fan = queue(("fan", (("a", 100.0, "step"), ("b", 100.0, "step"))),
                ("other", tuple((x, 100.0, "other") for x in "xyz")))
    sim = Simulator(fan, identical_pool(2), estimates=NONE)
    placements = ShareScheduler().decide(sim.reset())
    assert sorted(sim.table.task_ids[p.task] for p in placements) == [("fan", "a"), ("fan", "b")]


def test_a_held_back_task_does_not_wait_behind_jobs_that_ride_on_the_same_bet():
    # pipe-0 and pipe-1 are one train each; pipe-2's prepare comes next in
    # the order, but its own train hangs on the first run as much as pipe-1's:
    # holding pipe-1 back for it would only break shortest-first between them
    pipes = queue(("pipe-0", (("train", 300.0, "train"),)),
                  ("pipe-1", (("train", 300.0, "train"),)),
                  ("pipe-2", (("prepare", 30.0, "prepare"), ("train", 300.0, "train"))))
    assert first_starts(pipes, 2, ShareScheduler()) == {"pipe-0", "pipe-1"}


def test_with_exact_runtimes_every_kind_is_known_and_nothing_is_held_back():
    sim = Simulator(SWEEPS, identical_pool(2), estimates=EstimateModel("exact"))
    view = sim.reset()
    assert view.known_kinds is EVERY_KIND
    assert "sweep" in view.known_kinds


def test_the_first_run_settles_the_kind_and_its_siblings_then_run_in_order():
    # sweep turns out short (30 s): once it has finished, sweep-1 goes before
    # the longer eval runs, as shortest-first says
    inst = queue(("sweep-0", (("run", 30.0, "sweep"),)), ("sweep-1", (("run", 30.0, "sweep"),)),
                 ("eval-0", (("run", 500.0, "eval"),)), ("eval-1", (("run", 500.0, "eval"),)))
    sim = Simulator(inst, identical_pool(2), estimates=NONE)
    scheduler = ShareScheduler()
    view = sim.reset()
    while view is not None:
        view = sim.step(scheduler.decide(view))
    start = {sim.table.task_ids[a.task][0]: a.start for a in sim.trace if a.ok}
    assert start["sweep-0"] == 0.0 and start["eval-0"] == 0.0
    assert start["sweep-1"] == 30.0  # on sweep-0's device, as soon as it is known to be short
    assert start["eval-1"] >= start["sweep-1"]


def test_a_snapshot_keeps_the_kinds_known_at_its_decision():
    inst = queue(("sweep-0", (("run", 30.0, "sweep"),)), ("sweep-1", (("run", 30.0, "sweep"),)))
    sim = Simulator(inst, identical_pool(1), estimates=NONE)
    kept = sim.reset().snapshot()
    view = sim.step(ShareScheduler().decide(sim.reset()))
    while view is not None and "sweep" not in view.known_kinds:
        view = sim.step(ShareScheduler().decide(view))
    assert view is not None and "sweep" in view.known_kinds
    assert "sweep" not in kept.known_kinds
