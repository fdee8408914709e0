"""The peer benchmark's own machinery: seeded streams, stubs that sleep by
their GPU's speed, and the figures read from their log. (The benchmark
itself, minutes long, is `rlsched bench peers`, not a test.)"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from rlsched.live.peer_benchmark import (
    POOLS,
    StubJob,
    StubTask,
    ideal_avg_jct,
    make_stream,
    read_log,
    run_cell,
    run_task_spooler,
    summarise,
    write_stub,
)


@pytest.mark.parametrize("stream", ["independent", "pipelines", "repeats"])
def test_a_stream_is_the_same_under_a_seed_and_differs_across_seeds(stream):
    assert make_stream(stream, 1) == make_stream(stream, 1)
    assert make_stream(stream, 1) != make_stream(stream, 2)
    assert all(t.estimate is None for j in make_stream(stream, 1, "none") for t in j.tasks)


def test_repeats_are_six_kinds_each_with_one_estimate_and_runtimes_within_ten_percent():
    jobs = make_stream("repeats", 3)
    kinds: dict[str, list] = {}
    for j in jobs:
        kinds.setdefault(j.name.rsplit("-", 1)[0], []).append(j.tasks[0])
    assert len(kinds) == 6 and all(len(runs) == 8 for runs in kinds.values())
    for runs in kinds.values():
        assert len({t.estimate for t in runs}) == 1  # a user's job file, reused
        works = [t.work for t in runs]
        assert max(works) <= min(works) * 1.1 / 0.9 + 1e-9


def test_a_stub_sleeps_its_work_divided_by_its_gpus_speed(tmp_path):
    stub = write_stub(tmp_path, POOLS["mixed"])
    for dev in ("0", "2"):
        subprocess.run(["sh", str(stub), f"j{dev}/t", "0.3"], check=True,
                       env=dict(os.environ, CUDA_VISIBLE_DEVICES=dev))
    took = {dev: end - start for _, dev, start, end in read_log(tmp_path)}
    assert took[0] == pytest.approx(0.3, abs=0.15)
    assert took[2] == pytest.approx(0.9, abs=0.3)  # three times slower


def test_the_figures_of_a_run():
    rows = [("a/t", 0, 10.0, 11.0), ("b/t", 0, 11.01, 12.0), ("c/t", 1, 10.0, 13.0)]
    doc = summarise(rows, began=9.5, n_tasks=3)
    assert doc["avg_jct_s"] == pytest.approx((1.5 + 2.5 + 3.5) / 3)
    assert doc["makespan_s"] == pytest.approx(3.5)
    assert doc["first_start_s"] == pytest.approx(0.5)
    assert doc["median_gap_ms"] == pytest.approx(10.0)  # a's end to b's start
    assert "error" in summarise(rows[:2], began=9.5, n_tasks=3)


def _job(name, *works):
    return StubJob(name, tuple(StubTask(f"s{i}", w, None, (f"s{i - 1}",) if i else ())
                               for i, w in enumerate(works)))


def test_the_ideal_runs_the_least_remaining_work_first_and_waits_for_a_gpu_that_finishes_sooner():
    # two GPUs of one speed: the two short jobs first, the long one after
    assert ideal_avg_jct([_job("a", 3.0), _job("b", 1.0), _job("c", 1.0)], (1.0, 1.0)) == \
        pytest.approx((1.0 + 1.0 + 4.0) / 3)
    # a slow GPU three times slower: the second job waits for the fast one (2 s, not 3 s)
    assert ideal_avg_jct([_job("a", 1.0), _job("b", 1.0)], (1.0, 1 / 3)) == pytest.approx(1.5)
    # a pipeline's stages run one after the other, however many GPUs are free
    assert ideal_avg_jct([_job("p", 1.0, 1.0)], (1.0, 1.0)) == pytest.approx(2.0)
    # a job's order is all its remaining work, not its next stage's: the 1.6 s job
    # goes before a pipeline of two 1 s stages
    assert ideal_avg_jct([_job("p", 1.0, 1.0), _job("q", 1.6)], (1.0,)) == \
        pytest.approx((1.6 + 3.6) / 2)


def test_rlsched_runs_a_small_stream_live_and_every_task_is_counted():
    cell = run_cell("mixed", "repeats", "noisy", seed=1, schedulers=("fifo",), scale=0.05,
                    with_peers=False)
    (run,) = cell["runs"]
    assert run["system"] == "rlsched fifo" and "error" not in run, run
    assert run["tasks"] == cell["tasks"] == 48
    assert 0 < run["first_start_s"] < run["avg_jct_s"] <= run["makespan_s"]


@pytest.mark.skipif(shutil.which("tsp") is None, reason="task-spooler is not installed")
def test_task_spooler_runs_a_pipelines_stages_in_order(tmp_path):
    # task-spooler prints no job id under -n, and -D "" then means job 0: every
    # stage would wait for the queue's first job instead of its own parent
    jobs = [StubJob(f"p-{i}", (StubTask("a", 0.2, 0.2), StubTask("b", 0.1, 0.1, ("a",)),
                               StubTask("c", 0.1, 0.1, ("b",)))) for i in range(3)]
    stub = write_stub(tmp_path, POOLS["fake:4"])
    run_task_spooler(tmp_path, stub, jobs, 4)
    rows = {name: (start, end) for name, _, start, end in read_log(tmp_path)}
    assert len(rows) == 9
    for i in range(3):
        assert rows[f"p-{i}/b"][0] >= rows[f"p-{i}/a"][1]
        assert rows[f"p-{i}/c"][0] >= rows[f"p-{i}/b"][1]
