"""What schedulers are told: estimate models, oracles as bounds, and a view
that cannot leak the true runtime."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace

import numpy as np
import pytest

from rlsched.errors import InputError
from rlsched.estimates import DEFAULT_ESTIMATES, EstimateModel
from rlsched.evaluation.evaluate import evaluate
from rlsched.live.daemon import Daemon
from rlsched.live.store import Store
from rlsched.pool import preset_pool
from rlsched.schedulers import SCHEDULERS, make_scheduler
from rlsched.sim import Simulator
from rlsched.sources.jobfile import load_jobfile
from rlsched.sources.synthetic import generate
from rlsched.workload import Instance, Job, Task
from tests.helpers import SEARCH_EVALUATIONS, WFCOMMONS, assert_one_line_error, rlsched


@pytest.mark.parametrize("spec,expected", [
    ("exact", EstimateModel("exact")), ("none", EstimateModel("none")),
    ("noisy:0.5", EstimateModel("noisy", 0.5, 0.0)),
    ("noisy:1:-0.3", EstimateModel("noisy", 1.0, -0.3)),
    ("default", EstimateModel.parse(DEFAULT_ESTIMATES)),
])
def test_estimate_specs_name_their_models(spec, expected):
    assert EstimateModel.parse(spec) == expected


@pytest.mark.parametrize("spec,needle", [
    ("noisy", "SIGMA"), ("noisy:x", "numbers"), ("noisy:-1", "0 or more"),
    ("noisy:1:2:3", "SIGMA"), ("guess", "not an estimate model"), ("noisy:nan", "finite"),
])
def test_an_estimate_spec_that_cannot_be_read_is_one_line_and_exit_2(spec, needle):
    proc = rlsched("evaluate", "--workload", f"wfcommons:{WFCOMMONS / 'bacass-dirt02-001.json'}",
                   "--pool", "identical:2", "--estimates", spec)
    assert_one_line_error(proc, "--estimates", needle)


def many_tasks(n: int = 2000) -> Instance:
    return Instance("many", (Job("j", tuple(Task(f"t{i}", 100.0 + i) for i in range(n))),))


def test_noisy_estimates_are_lognormal_around_the_truth_and_seeded():
    model = EstimateModel("noisy", 1.0, math.log(2.0))
    a, b, c = (model.apply(many_tasks(), seed) for seed in (1, 1, 2))
    ratios = [t.estimate / t.work for t in a.jobs[0].tasks]
    assert statistics.median(ratios) == pytest.approx(2.0, rel=0.1)
    assert statistics.stdev(np.log(ratios)) == pytest.approx(1.0, rel=0.1)
    assert a == b and a != c


def test_exact_tells_the_truth_and_none_tells_nothing_not_even_a_users_estimate():
    inst = Instance("i", (Job("j", (Task("a", 50.0, estimate=10.0),)),))
    assert EstimateModel("exact").apply(inst, 0).jobs[0].tasks[0].estimate == 50.0
    assert EstimateModel("none").apply(inst, 0).jobs[0].tasks[0].estimate is None
    assert EstimateModel("noisy", 1.0).apply(inst, 0).jobs[0].tasks[0].estimate == 10.0


def test_a_job_files_runtime_drives_the_simulator_while_schedulers_see_its_estimate(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: j\ntasks:\n  - {id: train, estimate: 100, runtime: 300}\n")
    sim = Simulator(load_jobfile(path), preset_pool("workstation-4"),
                    estimates=EstimateModel.parse("default"))
    view = sim.reset()
    assert tuple(view.predicted) == (pytest.approx(100.0),)
    view = sim.step([make_scheduler("fifo").decide(view)[0]])
    assert view is None and sim.result().job_finish[0] == pytest.approx(
        300.0 / preset_pool("workstation-4").devices[0].model.compute_speed)


def test_a_job_file_estimate_without_a_runtime_is_the_runtime_and_is_not_told_as_is(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: j\ntasks:\n  - {id: train, estimate: 100}\n")
    pool = preset_pool("workstation-4")
    view = Simulator(load_jobfile(path), pool, estimates=EstimateModel.parse("default")).reset()
    assert view.predicted[0] != pytest.approx(100.0)  # drawn around it, as any true runtime
    exact = Simulator(load_jobfile(path), pool, estimates=EstimateModel.parse("exact")).reset()
    assert tuple(exact.predicted) == (100.0,)


def test_a_job_file_with_a_negative_runtime_is_refused_in_one_line(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: j\ntasks:\n  - {id: train, estimate: 100, runtime: -5}\n")
    proc = rlsched("evaluate", "--workload", f"jobs:{path}", "--pool", "identical:2")
    assert_one_line_error(proc, str(path), "negative runtime")


def test_an_oracle_is_a_bound_in_tables_and_json_and_never_the_best_to_beat(tmp_path):
    out = tmp_path / "e.json"
    proc = rlsched("evaluate", "--workload", f"wfcommons:{WFCOMMONS / 'bacass-dirt02-001.json'}",
                   "--pool", "preset:workstation-4", "--scheduler", "sjf,share,oracle:share",
                   "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "(bound)" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["config"]["estimates"] == EstimateModel.parse("default").spec
    assert doc["config"]["bounds"] == ["oracle:share"]
    assert doc["summary"]["oracle:share"]["bound"] and not doc["summary"]["share"]["bound"]
    best = min(doc["summary"][s]["avg_jct"] for s in ("sjf", "share"))
    assert min(doc["summary"][s]["jct_vs_best"] for s in ("sjf", "share")) == 1.0
    assert doc["summary"]["oracle:share"]["jct_vs_best"] == pytest.approx(
        doc["summary"]["oracle:share"]["avg_jct"] / best)


def test_an_oracle_reproduces_its_heuristic_with_exact_estimates():
    spec = f"wfcommons:{WFCOMMONS / 'bacass-dirt02-001.json'}"
    told = evaluate([spec], "preset:workstation-4", ["oracle:share"], estimates="none")
    exact = evaluate([spec], "preset:workstation-4", ["share"], estimates="exact")
    assert told.results[0].metrics == exact.results[0].metrics


def test_an_oracle_is_refused_by_serve(tmp_path):
    proc = rlsched("serve", "--pool", "fake:1", "--scheduler", "oracle:share",
                   state=tmp_path / "fresh")
    assert_one_line_error(proc, "oracle:share", "bound")
    assert not (tmp_path / "fresh").exists()  # refused before any state was made
    with pytest.raises(InputError, match="bound"):
        Daemon(Store(tmp_path / "state"), "fake:1", "oracle:share")
    with pytest.raises(InputError, match="not one"):
        make_scheduler("oracle:rl:default")


def staggered(truth: int) -> Instance:
    """Synthetic jobs arriving one second apart, with the same estimates
    whatever ``truth`` is; the true runtimes are those estimates stretched
    by factors that ``truth`` draws."""
    base = generate("mixed", {"jobs": "8"}, 0, "leak")
    rng = np.random.default_rng(truth)
    jobs = []
    for i, job in enumerate(base.jobs):
        tasks = tuple(replace(t, work=1000.0 * (t.work or 1.0) * float(rng.uniform(0.3, 3.0)),
                              estimate=1000.0 * (t.work or 1.0), gpus=1) for t in job.tasks)
        jobs.append(Job(job.name, tasks, arrival=float(i)))
    return Instance("leak", tuple(jobs), source="test")


def decisions_before_the_first_finish(instance: Instance, name: str) -> list[tuple]:
    sim = Simulator(instance, preset_pool("workstation-4"), seed=5,
                    estimates=EstimateModel("noisy", 1.0))  # the tasks' own estimates are kept
    scheduler = make_scheduler(name, search_evaluations=SEARCH_EVALUATIONS)
    scheduler.reset(5)
    out = []
    view = sim.reset()
    while view is not None and not sim.trace:
        placements = scheduler.decide(view)
        out.append((view.time, tuple(placements)))
        view = sim.step(placements)
    return out


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_two_worlds_that_differ_only_in_true_runtimes_look_the_same_until_a_task_ends(name):
    a = decisions_before_the_first_finish(staggered(1), name)
    b = decisions_before_the_first_finish(staggered(2), name)
    n = min(len(a), len(b))
    assert n >= 4  # several arrivals, each a decision, happen before anything ends
    assert a[:n] == b[:n]


def test_the_view_holds_no_true_runtime_anywhere():
    view = Simulator(staggered(1), preset_pool("workstation-4"),
                     estimates=EstimateModel("noisy", 1.0)).reset()
    assert all(t.work is None for j in view.table.jobs for t in j.tasks)
    assert not hasattr(view.table, "work")


def test_training_configs_and_the_environment_take_an_estimate_model(tmp_path):
    from agents.train import TrainConfig
    from envs import DagSchedulingEnv

    bad = tmp_path / "bad.yaml"
    bad.write_text("estimates: noisy:-1\n")
    with pytest.raises(InputError, match="SIGMA must be 0 or more"):
        TrainConfig.from_yaml(bad)
    kinds = tmp_path / "kinds.yaml"
    kinds.write_text("kinds:\n  - {estimates: none}\n  - {estimates: exact}\n")
    assert [k.estimates for k in TrainConfig.from_yaml(kinds).episode_kinds()] == ["none", "exact"]
    spec = f"wfcommons:{WFCOMMONS / 'bacass-dirt02-001.json'}"
    blind = DagSchedulingEnv(spec, "preset:workstation-4", estimates="none")
    blind.reset(seed=0)
    assert blind.view.predicted == pytest.approx([60.0] * blind.sim.table.n_tasks)  # none known
    told = DagSchedulingEnv(spec, "preset:workstation-4", estimates="exact")
    told.reset(seed=0)
    assert tuple(told.view.predicted) == told.sim.work
