"""The simulator's world model, checked on cases small enough to work out by hand."""

from __future__ import annotations

import pytest

from rlsched.errors import InputError, SchedulerError
from rlsched.perturbations import Perturbations
from rlsched.pool import CATALOGUE, build_pool, identical_pool, preset_pool
from rlsched.sim import Simulator
from rlsched.view import Placement, TaskState
from rlsched.workload import Instance, Job, Task
from tests.helpers import simulate


def one_job(*tasks: Task, name: str = "j", arrival: float = 0.0) -> Instance:
    return Instance(name, (Job(name, tuple(tasks), arrival=arrival),), source="test")


def test_a_wfcommons_instance_on_one_device_takes_the_sum_of_its_runtimes(wfcommons_instances):
    pool = identical_pool(1, "a100-80gb")  # memory for every task; speed does not matter ...
    for inst in wfcommons_instances[:3]:
        ref = identical_pool(1)  # ... on the reference device, speed 1.0
        if max(t.gpu_memory for t in inst.jobs[0].tasks) > 24:
            continue
        _, m = simulate(inst, ref, "fifo")
        total = sum(t.work for t in inst.jobs[0].tasks)
        assert m.makespan == pytest.approx(total, rel=1e-9)
    assert pool.max_memory == 80


def test_a_chain_runs_in_order_at_the_device_speed():
    inst = one_job(Task("a", 10.0), Task("b", 20.0, parents=("a",)))
    pool = build_pool("fast", [CATALOGUE["rtx-4090"]])
    result, m = simulate(inst, pool, "fifo")
    speed = CATALOGUE["rtx-4090"].compute_speed
    assert m.makespan == pytest.approx(30.0 / speed)
    a, b = result.trace
    assert a.end == pytest.approx(b.start)


def test_memory_bound_tasks_run_at_the_memory_speed():
    inst = one_job(Task("m", 100.0, kind="memory"))
    model = CATALOGUE["a100-80gb"]
    _, m = simulate(inst, build_pool("a100", [model]), "fifo")
    assert m.makespan == pytest.approx(100.0 / model.memory_speed)


def test_cpu_only_tasks_start_by_themselves_on_the_host():
    inst = one_job(Task("prep", 5.0, gpus=0), Task("train", 10.0, parents=("prep",)))
    result, m = simulate(inst, identical_pool(1), "fifo")
    assert [(a.device, a.start, a.end) for a in result.trace] == [(-1, 0.0, 5.0), (0, 5.0, 15.0)]
    assert result.decisions == 1


def test_tasks_sharing_a_device_slow_each_other_down():
    inst = one_job(Task("a", 10.0, gpu_memory=1), Task("b", 10.0, gpu_memory=1))
    pool = identical_pool(1)
    sim = Simulator(inst, pool)
    view = sim.reset()
    view = sim.step([Placement(0, 0), Placement(1, 0)])
    assert view is None
    ends = [a.end for a in sim.result().trace]
    # each at 1 / (1 + 1.1): together they take longer than one after the other
    assert ends == pytest.approx([10.0 * (1 + pool.interference)] * 2)
    assert max(ends) > 20.0


def test_a_placement_that_does_not_fit_is_refused_with_a_reason():
    inst = one_job(Task("a", 10.0, gpu_memory=20), Task("b", 10.0, gpu_memory=20))
    sim = Simulator(inst, identical_pool(1))
    sim.reset()
    with pytest.raises(SchedulerError, match="needs 20.00 GiB but device 0 has 4.00 GiB free"):
        sim.step([Placement(0, 0), Placement(1, 0)])


def test_placing_a_blocked_task_is_refused():
    inst = one_job(Task("a", 1.0), Task("b", 1.0, parents=("a",)))
    sim = Simulator(inst, identical_pool(2))
    view = sim.reset()
    assert view.ready == (0,)
    assert view.task_state[1] == TaskState.BLOCKED
    with pytest.raises(SchedulerError, match="blocked, not ready"):
        sim.step([Placement(1, 0)])


def test_waiting_with_nothing_running_and_nothing_to_come_is_a_scheduler_bug():
    sim = Simulator(one_job(Task("a", 1.0)), identical_pool(1))
    sim.reset()
    with pytest.raises(SchedulerError, match="waited"):
        sim.step([])


def test_a_task_bigger_than_every_device_is_an_input_error():
    inst = one_job(Task("huge", 1.0, gpu_memory=100))
    with pytest.raises(InputError, match="needs 100 GiB .* largest device .* has 80 GiB"):
        Simulator(inst, preset_pool("workstation-4"))


def test_jobs_arrive_at_their_time_and_not_before():
    jobs = (Job("early", (Task("a", 5.0),), arrival=0.0),
            Job("late", (Task("b", 5.0),), arrival=100.0))
    result, m = simulate(Instance("two", jobs), identical_pool(2), "fifo")
    starts = {result.table.task_ids[a.task][0]: a.start for a in result.trace}
    assert starts == {"early": 0.0, "late": 100.0}
    assert m.avg_jct == pytest.approx(5.0)
    assert m.makespan == pytest.approx(105.0)


def test_a_view_holds_for_its_decision_and_its_snapshot_for_good():
    # the simulator hands out its own ready queue, task states and predictions
    # (copying them at every decision would cost O(tasks)); snapshot() copies
    inst = one_job(Task("a", 1.0), Task("b", 2.0))
    sim = Simulator(inst, identical_pool(2))
    view = sim.reset()
    kept = view.snapshot()
    before = (kept.time, tuple(kept.ready), bytes(kept.task_state), kept.devices,
              tuple(kept.predicted), tuple(kept.job_attained))
    sim.step([Placement(0, 0)])
    assert (kept.time, tuple(kept.ready), bytes(kept.task_state), kept.devices,
            tuple(kept.predicted), tuple(kept.job_attained)) == before
    assert kept.task_state[0] == TaskState.READY
    assert view.task_state[0] == TaskState.RUNNING  # the live one moved on


def test_attained_service_counts_ended_and_running_attempts_when_read():
    jobs = (Job("a", (Task("x", 4.0),)), Job("b", (Task("y", 10.0),)),
            Job("c", (Task("z", 1.0),)))
    sim = Simulator(Instance("three", jobs), identical_pool(2))
    view = sim.reset()
    view = sim.step([Placement(0, 0), Placement(1, 1)])  # z could share: asked again at 0
    assert view is not None and view.time == 0.0
    view = sim.step([])  # wait: x ends at 4
    assert view is not None and view.time == pytest.approx(4.0)
    # a: x's ended attempt; b: y running for 4 s; c: nothing yet
    assert tuple(view.job_attained) == pytest.approx((4.0, 4.0, 0.0))
    assert len(view.job_attained) == 3 and view.job_attained[1] == pytest.approx(4.0)


def test_throttling_shows_in_telemetry_and_slows_the_device():
    perturb = Perturbations(throttle=True, throttle_every=1.0, throttle_for=1e6)
    inst = one_job(*(Task(f"t{i}", 100.0) for i in range(20)))
    pool = identical_pool(1)
    sim = Simulator(inst, pool, seed=3, perturbations=perturb)
    view = sim.reset()
    ratios, temps = [], []
    while view is not None:
        ratios.append(view.devices[0].clock_ratio)
        temps.append(view.devices[0].temperature_c)
        view = sim.step([Placement(view.ready[0], 0)] if view.devices[0].n_tasks == 0 else [])
    assert min(ratios) < 0.81 and max(temps) > 85
    assert max(a.end for a in sim.result().trace) > 2000.0


def test_a_failed_device_loses_its_tasks_and_they_run_again():
    perturb = Perturbations(failures=True, fail_every=50.0, fail_for=10.0)
    inst = one_job(*(Task(f"t{i}", 30.0) for i in range(10)))
    result, m = simulate(inst, identical_pool(2), "fifo", seed=1, perturbations=perturb)
    assert m.failed_attempts > 0
    done = [a.task for a in result.trace if a.ok]
    assert sorted(done) == list(range(10))
    for a in result.trace:
        if not a.ok:
            assert a.end - a.start < 30.0 + 1e-9


def test_external_processes_take_memory_and_slow_our_tasks():
    perturb = Perturbations(external=True, external_every=1.0, external_for=1e6,
                            external_memory=(8.0, 8.0), external_load=(1.0, 1.0))
    inst = one_job(*(Task(f"t{i}", 100.0, gpu_memory=1) for i in range(5)))
    sim = Simulator(inst, identical_pool(1), seed=0, perturbations=perturb)
    view = sim.reset()
    seen = []
    while view is not None:
        d = view.devices[0]
        seen.append((d.memory_used, d.n_tasks))
        view = sim.step([Placement(view.ready[0], 0)] if d.n_tasks == 0 else [])
    assert any(used >= 8.0 and n == 0 for used, n in seen)  # memory used by someone else
    assert max(a.end for a in sim.result().trace) > 500.0 + 100.0


def test_a_fork_plays_out_the_same_future_without_touching_the_original(wfcommons_instances):
    """Online, with every perturbation on: the fork faces the same arrivals,
    throttling, outside load and failures; stepping it (even differently)
    leaves the original where it was."""
    from rlsched.schedulers import make_scheduler

    sim, share = _halfway(wfcommons_instances)
    view = sim._view()
    before = (sim.now, list(sim.trace), bytes(sim.state))
    other = sim.fork()
    fifo, v = make_scheduler("fifo"), other._view()
    while v is not None:  # the fork goes another way, to the end
        v = other.step(fifo.decide(v))
    assert (sim.now, list(sim.trace), bytes(sim.state)) == before
    twin = sim.fork()
    tv = twin._view()
    while view is not None:
        assert tv == view
        placements = share.decide(view)
        view, tv = sim.step(placements), twin.step(placements)
    assert tv is None
    assert sim.result().trace == twin.result().trace
    assert sim.result().job_finish == twin.result().job_finish
    assert any(not a.ok for a in sim.trace[len(before[1]):])  # failures after the fork, shared
    assert other.result().job_finish != sim.result().job_finish


def _halfway(wfcommons_instances):
    """An online episode with frequent failures, run by share to its 60th decision."""
    import numpy as np

    from rlsched.arrivals import online
    from rlsched.schedulers import make_scheduler

    pool = preset_pool("workstation-4")
    inst = online(wfcommons_instances[:6], pool, 0.85, np.random.default_rng(4))
    weather = Perturbations(throttle=True, external=True, failures=True, fail_every=900.0)
    sim = Simulator(inst, pool, seed=5, perturbations=weather)
    share = make_scheduler("share")
    view = sim.reset()
    for _ in range(60):
        view = sim.step(share.decide(view))
    return sim, share


def _run_out(sim, scheduler):
    view = sim._view()
    while view is not None:
        view = sim.step(scheduler.decide(view))
    return sim


def test_a_fork_without_arrivals_finishes_the_arrived_jobs_and_no_others(wfcommons_instances):
    import math

    sim, share = _halfway(wfcommons_instances)
    arrived = sim._n_arrived
    assert arrived < sim.table.n_jobs  # some jobs are still to come
    before = (sim.now, list(sim.trace), bytes(sim.state))
    blind = _run_out(sim.fork(arrivals=False), share)
    finish = blind.job_finish
    assert all(not math.isnan(f) for f in finish[:arrived])
    assert all(math.isnan(f) for f in finish[arrived:])
    assert {blind.table.job_of[a.task] for a in blind.trace} <= set(range(arrived))
    assert (sim.now, list(sim.trace), bytes(sim.state)) == before


def test_a_fork_with_weather_drawn_anew_faces_other_failures_the_same_for_one_seed(
        wfcommons_instances):
    sim, share = _halfway(wfcommons_instances)
    own = _run_out(sim.fork(), share)
    again = [_run_out(sim.fork(weather=1), share) for _ in range(2)]
    other = _run_out(sim.fork(weather=2), share)
    assert again[0].trace == again[1].trace  # a weather seed is a future
    failed = {w: [(a.device, round(a.end, 6)) for a in s.trace[len(sim.trace):] if not a.ok]
              for w, s in (("own", own), (1, again[0]), (2, other))}
    assert failed["own"] != failed[1] and failed[1] != failed[2]
    assert all(a.ok or a.end >= sim.now for a in other.trace[len(sim.trace):])
    assert sim._n_arrived < sim.table.n_jobs and len(other.result().job_finish) == sim.table.n_jobs


def test_a_task_far_longer_than_the_time_between_failures_is_refused_not_run_forever():
    from rlsched.errors import InputError
    from rlsched.evaluation.evaluate import run_episode
    from rlsched.perturbations import Perturbations
    from rlsched.pool import identical_pool
    from rlsched.schedulers import make_scheduler
    from rlsched.workload import Instance, Job, Task

    inst = Instance("long", (Job("j", (Task("t", 10_000.0),)),), source="test")
    failing = Perturbations(failures=True, fail_every=10.0, fail_for=1.0)
    with pytest.raises(InputError, match=r"task j/t was lost to device failures 100 times"):
        run_episode(inst, identical_pool(1), make_scheduler("fifo"), 0, failing)
