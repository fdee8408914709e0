"""Gangs: a task of ``gpus: N`` starts on N devices at once, runs at its
slowest member's speed, holds them all until it ends, and is lost whole when
one of them fails; every heuristic places gangs, and those that say so never
starve one behind a stream of 1-GPU tasks."""

from __future__ import annotations

import pytest

from rlsched.errors import InputError, SchedulerError
from rlsched.estimates import EstimateModel
from rlsched.evaluation.evaluate import run_episode
from rlsched.gangs import gang_work, parallel_efficiency, pick_gang
from rlsched.metrics import makespan_lower_bound, measure
from rlsched.perturbations import Perturbations
from rlsched.pool import CATALOGUE, Device, Pool, build_pool, identical_pool
from rlsched.schedulers import SCHEDULERS, make_scheduler
from rlsched.sim import Simulator
from rlsched.sources.synthetic import generate
from rlsched.view import Placement
from rlsched.workload import Instance, Job, Task
from tests.helpers import SEARCH_EVALUATIONS, check_schedule

FAST, REF = CATALOGUE["rtx-4090"], CATALOGUE["rtx-3090"]


def one_job(*tasks: Task, arrival: float = 0.0, name: str = "j") -> Instance:
    return Instance("gangs", (Job(name, tasks, arrival=arrival),), source="test")


def two_hosts(linked: bool) -> Pool:
    return Pool("two-hosts", (Device(0, REF, "a"), Device(1, REF, "a"), Device(2, REF, "b")),
                hosts_linked=linked, across_hosts=0.5)


def test_a_gang_runs_at_its_slowest_members_speed_on_all_its_devices_at_once():
    pool = build_pool("mixed", [FAST, REF])
    sim = Simulator(one_job(Task("train", 100.0, gpus=2)), pool)
    view = sim.reset()
    assert view.ready == (0,)
    view = sim.step([Placement(0, 0, (1,))])
    assert view is None
    (attempt,) = sim.result().trace
    assert attempt.devices == (0, 1)
    assert attempt.end == pytest.approx(100.0 / REF.compute_speed)  # the 3090's pace


def test_while_a_gang_runs_every_member_shows_it_and_the_view_lists_it_once_per_device():
    pool = identical_pool(3)
    sim = Simulator(one_job(Task("train", 100.0, gpus=2), Task("other", 10.0)), pool)
    view = sim.reset()
    view = sim.step([Placement(0, 0, (2,))])
    assert view is not None and view.ready == (1,)
    assert [d.n_tasks for d in view.devices] == [1, 0, 1]
    assert sorted((r.task, r.device) for r in view.running) == [(0, 0), (0, 2)]
    assert view.job_attained[0] == 0.0


def test_a_gang_across_linked_hosts_runs_at_the_pools_across_hosts_fraction():
    sim = Simulator(one_job(Task("train", 100.0, gpus=3)), two_hosts(linked=True))
    sim.reset()
    sim.step([Placement(0, 0, (1, 2))])
    assert sim.result().trace[0].end == pytest.approx(200.0)  # across_hosts 0.5


def test_a_gang_may_not_span_hosts_that_are_not_linked():
    sim = Simulator(one_job(Task("train", 100.0, gpus=2)), two_hosts(linked=False))
    sim.reset()
    assert not sim.can_place(0, 0, (2,))
    with pytest.raises(SchedulerError, match="span hosts"):
        sim.step([Placement(0, 0, (2,))])
    assert sim.can_place(0, 0, (1,))


@pytest.mark.parametrize("placement, problem", [
    (Placement(0, 0), "takes 2 GPUs at once, not 1"),
    (Placement(0, 0, (0,)), "one device twice"),
    (Placement(0, 0, (1, 2)), "takes 2 GPUs at once, not 3"),
])
def test_a_gang_placement_names_exactly_its_number_of_distinct_devices(placement, problem):
    sim = Simulator(one_job(Task("train", 100.0, gpus=2)), identical_pool(3))
    sim.reset()
    with pytest.raises(SchedulerError, match=problem):
        sim.step([placement])


def test_memory_is_per_device_so_a_gang_fills_each_member():
    pool = identical_pool(2)  # 24 GiB each
    inst = one_job(Task("train", 100.0, gpu_memory=20.0, gpus=2), Task("small", 10.0, gpu_memory=8.0))
    sim = Simulator(inst, pool)
    view = sim.reset()
    assert view.ready == (0, 1)
    view = sim.step([Placement(0, 0, (1,))])
    # no device had 8 GiB free beside the gang: the next decision is when it ends
    assert view is not None and view.time == pytest.approx(100.0) and view.ready == (1,)
    assert view.job_attained[0] == pytest.approx(200.0)  # two devices for 100 s


def test_a_failing_member_loses_the_whole_gang_and_frees_its_other_devices():
    pool = identical_pool(2)
    failures = Perturbations(failures=True, fail_every=30.0, fail_for=1.0)
    inst = one_job(Task("train", 50.0, gpus=2))
    # the first seed under which a device fails while the gang runs
    result = next(r for r in (run_episode(inst, pool, make_scheduler("fifo"), seed, failures)
                              for seed in range(50)) if not r.trace[0].ok)
    lost, *_, done = result.trace
    assert set(lost.devices) == set(done.devices) == {0, 1}
    assert done.ok and done.start >= lost.end
    assert done.end - done.start == pytest.approx(50.0)  # it started again from scratch
    check_schedule(pool, result, measure(result))


def test_the_work_bound_counts_a_gang_once_per_device_it_holds():
    pool = identical_pool(2)
    inst = one_job(Task("train", 100.0, gpus=2), Task("other", 100.0))
    sim = Simulator(inst, pool)
    sim.reset()
    bound = makespan_lower_bound(sim.table, sim.work, pool)
    assert bound == pytest.approx(150.0)  # (2 x 100 + 100) device-seconds over 2 devices


def test_a_gang_no_host_can_hold_is_refused_with_one_line_naming_the_task():
    with pytest.raises(InputError, match=r"task 'train' needs 3 GPUs at once but one host of "
                                         r"pool 'two-hosts' has 2"):
        Simulator(one_job(Task("train", 100.0, gpus=3)), two_hosts(linked=False))
    with pytest.raises(InputError, match=r"needs 2 GPUs at once with 30 GiB each"):
        Simulator(one_job(Task("train", 100.0, gpu_memory=30.0, gpus=2)),
                  build_pool("p", [CATALOGUE["a100-80gb"], REF]))


def test_the_scaling_curve_keeps_95_percent_per_doubling():
    assert parallel_efficiency(1) == 1.0
    assert parallel_efficiency(4) == pytest.approx(0.95 ** 2)
    assert gang_work(3600.0, 4) == pytest.approx(3600.0 / (4 * 0.9025))


def test_pick_gang_stays_on_one_host_and_takes_the_fastest_there():
    pool = Pool("p", (Device(0, REF, "a"), Device(1, FAST, "b"), Device(2, FAST, "b"),
                      Device(3, REF, "a"), Device(4, REF, "a")))
    speed = {0: 2.0, 1: 1.0, 2: 1.0, 3: 2.0, 4: 2.0}
    assert pick_gang(pool, 2, range(5), speed.__getitem__) == (1, 2)
    assert pick_gang(pool, 3, range(5), speed.__getitem__) == (0, 3, 4)
    assert pick_gang(pool, 2, range(5), speed.__getitem__, first=3) == (3, 0)
    assert pick_gang(pool, 4, range(5), speed.__getitem__) is None


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_heuristic_places_gangs(scheduler):
    inst = generate("gangs", {"jobs": "12"}, 0, "synthetic:gangs")
    assert any(t.gpus > 1 for j in inst.jobs for t in j.tasks)
    pool = identical_pool(8)
    sched = make_scheduler(scheduler, search_evaluations=SEARCH_EVALUATIONS)
    result = run_episode(inst, pool, sched, 0, estimates=EstimateModel.parse("default"))
    check_schedule(pool, result, measure(result))


def stream_with_a_gang(gang_arrival: float = 200.0) -> Instance:
    """1-GPU tasks of 100 s every 30 s for 3,000 s (about 3.3 of 4 GPUs
    busy), and one 4-GPU task of 500 s arriving among them."""
    jobs = [Job(f"small{i}", (Task("run", 100.0),), arrival=30.0 * i) for i in range(100)]
    jobs.append(Job("big", (Task("train", 500.0, gpus=4),), arrival=gang_arrival))
    return Instance("stream", tuple(jobs), source="test")


def gang_start(scheduler: str, estimates: str) -> float:
    inst = stream_with_a_gang()
    sched = make_scheduler(scheduler, search_evaluations=SEARCH_EVALUATIONS)
    result = run_episode(inst, identical_pool(4), sched, 0,
                         estimates=EstimateModel.parse(estimates))
    big = result.table.task_ids.index(("big", "train"))
    return next(a.start for a in result.trace if a.task == big and a.ok)


FAIR = sorted(name for name, make in SCHEDULERS.items() if make().gang_fair)


def test_the_schedulers_that_claim_gang_fairness_include_the_queue_the_backfill_and_share():
    assert {"fifo", "backfill", "share", "las"} <= set(FAIR)


@pytest.mark.parametrize("estimates", ["exact", "default"])
@pytest.mark.parametrize("scheduler", FAIR)
def test_a_gang_behind_a_stream_of_small_tasks_starts_within_a_bounded_time(scheduler, estimates):
    # the stream's tasks take 100 s: once the gang is due (share waits up to
    # its runtime, 500 s, before holding devices for it), what runs ends
    # within that, and nothing that came after it may take its devices long
    waited = gang_start(scheduler, estimates) - 200.0
    assert waited <= 1000.0, f"{scheduler} kept the gang waiting {waited:.0f} s"


def test_shortest_job_first_starves_the_gang_which_is_why_backfill_exists():
    # the control: a scheduler that does not claim fairness does starve it here
    assert gang_start("sjf", "exact") - 200.0 > 2000.0
