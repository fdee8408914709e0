"""Metrics and lower bounds on cases worked out by hand."""

from __future__ import annotations

import pytest

from rlsched.metrics import critical_paths, makespan_lower_bound
from rlsched.pool import CATALOGUE, build_pool, identical_pool
from rlsched.table import WorkloadTable
from rlsched.workload import Instance, Job, Task
from tests.helpers import simulate


def test_the_critical_path_uses_the_fastest_device_for_each_kind():
    job = Job("j", (Task("a", 10.0, "compute"), Task("b", 10.0, "memory", parents=("a",))))
    pool = build_pool("mixed", [CATALOGUE["rtx-4090"], CATALOGUE["a100-80gb"]])
    (cp,) = critical_paths(*WorkloadTable.with_truth([job]), pool)
    assert cp == pytest.approx(10 / CATALOGUE["rtx-4090"].compute_speed
                               + 10 / CATALOGUE["a100-80gb"].memory_speed)


def test_the_work_bound_spreads_gpu_work_over_every_device():
    job = Job("j", tuple(Task(f"t{i}", 10.0) for i in range(8)) + (Task("cpu", 99.0, gpus=0),))
    assert makespan_lower_bound(*WorkloadTable.with_truth([job]), identical_pool(2)) == \
        pytest.approx(99.0)  # the CPU task
    job = Job("j", tuple(Task(f"t{i}", 10.0) for i in range(8)))
    assert makespan_lower_bound(*WorkloadTable.with_truth([job]), identical_pool(2)) == 40.0


def test_the_work_bound_counts_only_work_arriving_after_each_time():
    jobs = [Job("a", (Task("x", 10.0),), arrival=0.0), Job("b", (Task("y", 10.0),), arrival=50.0)]
    assert makespan_lower_bound(*WorkloadTable.with_truth(jobs), identical_pool(1)) == 60.0


def test_metrics_of_a_simple_episode():
    jobs = (Job("a", (Task("x", 10.0),), priority=3.0),
            Job("b", (Task("y", 10.0),), priority=1.0, deadline=15.0))
    _, m = simulate(Instance("two", jobs), identical_pool(1), "fifo")
    assert m.makespan == 20.0
    assert m.avg_jct == 15.0
    assert m.weighted_jct == pytest.approx((3 * 10 + 1 * 20) / 4)
    assert m.deadline_misses == 1
    assert m.utilization == pytest.approx(1.0)
    assert m.slowdown == pytest.approx((1.0 + 2.0) / 2)
