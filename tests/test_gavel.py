"""Gavel's traces as a workload: each job runs steps / throughput on each GPU
model it was measured on, two 1-GPU jobs sharing a device run at the pair's
measured throughputs, filters fit a trace to a workstation, no schedule beats
the bounds, and bad input is one line."""

from __future__ import annotations

import json

import pytest

from rlsched.metrics import measure
from rlsched.pool import CATALOGUE, build_pool, preset_pool
from rlsched.schedulers import SCHEDULERS
from rlsched.sim import Simulator
from rlsched.sources.specs import resolve_workload
from rlsched.view import Placement
from tests.helpers import WORKLOADS, assert_one_line_error, check_schedule, rlsched, simulate

V100, K80 = CATALOGUE["v100-16gb"], CATALOGUE["k80"]


def two_job_trace(tmp_path, steps=(100, 60)):
    """X: 100 steps at 2.0/s on a V100 (50 s), 0.5/s on a K80 (200 s); Y: 60
    steps at 1.0/s (60 s) and 0.6/s (100 s); together on a V100 each runs at
    half its speed alone."""
    table = {
        "v100": {"('X', 1)": {"null": 2.0, "('Y', 1)": [1.0, 0.5]},
                 "('Y', 1)": {"null": 1.0, "('X', 1)": [0.5, 1.0]}},
        "k80": {"('X', 1)": {"null": 0.5}, "('Y', 1)": {"null": 0.6}},
    }
    (tmp_path / "simulation_throughputs.json").write_text(json.dumps(table))
    trace = tmp_path / "two.trace"
    trace.write_text(f"X\tcmd\t-n\t1\t{steps[0]}\t0.0\t1\nY\tcmd\t-n\t1\t{steps[1]}\t0.0\t1\n")
    return trace


def load(tmp_path, **kwargs):
    two_job_trace(tmp_path, **kwargs)
    (instance,) = resolve_workload(f"trace:gavel:{tmp_path}").instances(0)
    return instance


def test_each_job_runs_steps_over_its_throughput_on_each_model(tmp_path):
    instance = load(tmp_path)
    for model, (x, y) in ((V100, (50.0, 60.0)), (K80, (200.0, 100.0))):
        sim = Simulator(instance, build_pool("one", [model]))
        view = sim.reset()
        assert [view.nominal_runtime(t, 0) for t in (0, 1)] == pytest.approx([x, y])
        while view is not None:  # one at a time
            view = sim.step([] if view.running else [Placement(view.ready[0], 0)])
        took = {a.task: a.end - a.start for a in sim.result().trace}
        assert took == pytest.approx({0: x, 1: y})


def test_two_jobs_sharing_a_v100_run_at_their_measured_pair_throughputs(tmp_path):
    instance = load(tmp_path)
    sim = Simulator(instance, build_pool("one", [V100]))
    sim.reset()
    assert sim.step([Placement(0, 0), Placement(1, 0)]) is None
    ends = {a.task: a.end for a in sim.result().trace}
    # X at half speed: 100 s; Y at half speed has done 100/120 of its work
    # by then, and its last 10 s alone
    assert ends[0] == pytest.approx(100.0)
    assert ends[1] == pytest.approx(110.0)


def test_elsewhere_sharing_follows_the_pools_interference(tmp_path):
    instance = load(tmp_path)
    sim = Simulator(instance, build_pool("one", [K80], interference=1.0))
    sim.reset()
    sim.step([Placement(0, 0), Placement(1, 0)])
    ends = {a.task: a.end for a in sim.result().trace}
    # no pair measured on a K80: each at half speed; Y (100 s alone) ends at
    # 200 s, then X has 100 of its 200 s left, alone
    assert ends[1] == pytest.approx(200.0)
    assert ends[0] == pytest.approx(300.0)


def test_filters_keep_jobs_by_size_window_and_count_and_compress_arrivals():
    spec = f"trace:gavel:{WORKLOADS / 'gavel'}"
    (everything,) = resolve_workload(spec).instances(0)
    assert all(t.gpus <= 4 for j in everything.jobs for t in j.tasks)  # the default
    (ones,) = resolve_workload(spec + "?max_gpus=1&jobs=5").instances(0)
    assert len(ones.jobs) == 5 and all(j.tasks[0].gpus == 1 for j in ones.jobs)
    (dense,) = resolve_workload(spec + "?max_gpus=1&jobs=5&compress=10").instances(0)
    assert [d.arrival for d in dense.jobs] == pytest.approx([j.arrival / 10 for j in ones.jobs])
    (early,) = resolve_workload(spec + "?window=0,10h").instances(0)
    assert 0 < len(early.jobs) < len(everything.jobs)


@pytest.mark.parametrize("pool", ["lab-kpv", "kpv-12"])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_no_schedule_beats_the_bounds_on_gavel_jobs(pool, scheduler):
    (instance,) = resolve_workload(f"trace:gavel:{WORKLOADS / 'gavel'}?jobs=30").instances(0)
    p = preset_pool(pool)
    result, m = simulate(instance, p, scheduler)
    check_schedule(p, result, m)
    assert measure(result).lower_bound > 0


def test_a_job_type_missing_from_the_table_is_one_line(tmp_path):
    trace = two_job_trace(tmp_path)
    trace.write_text(trace.read_text() + "Z\tcmd\t-n\t1\t10\t5.0\t1\n")
    proc = rlsched("evaluate", "--workload", f"trace:gavel:{trace}", "--pool", "preset:lab-kpv")
    assert_one_line_error(proc, str(trace), "line 3", "job type 'Z' is not in the throughput table")


def test_a_negative_step_count_is_one_line(tmp_path):
    trace = two_job_trace(tmp_path, steps=(100, -5))
    proc = rlsched("evaluate", "--workload", f"trace:gavel:{trace}", "--pool", "preset:lab-kpv")
    assert_one_line_error(proc, str(trace), "line 2", "negative step count -5")
