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
