"""``rlsched evaluate`` and ``rlsched bench sim`` keep their contracts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rlsched.errors import InputError, SchedulerError
from rlsched.evaluation.evaluate import evaluate
from rlsched.schedulers import SCHEDULERS
from tests.helpers import STG, WFCOMMONS

RESULT_KEYS = {"scheduler", "workload", "instance", "seed", "makespan", "avg_jct",
               "weighted_jct", "utilization", "lower_bound", "optimum"}


def test_json_results_and_summary(tmp_path):
    out = tmp_path / "r.json"
    plots = tmp_path / "plots"
    proc = subprocess.run(
        [sys.executable, "-m", "rlsched", "evaluate", "--workload", f"stg:{STG / '50'}",
         "--pool", "identical:4", "--scheduler", "fifo,heft", "--estimates", "exact",
         "--json", str(out),
         "--plot", str(plots)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "heft" in proc.stdout and "makespan/opt" in proc.stdout
    doc = json.loads(out.read_text())
    assert len(doc["results"]) == 2 * 90
    for row in doc["results"]:
        assert RESULT_KEYS <= set(row)
        assert row["optimum"] is not None and row["makespan"] >= row["optimum"] - 1e-6
    assert doc["config"]["estimates"] == "exact"
    summary = doc["summary"]
    assert set(summary) == {"fifo", "heft"}
    assert summary["heft"]["makespan_vs_optimum"] <= summary["fifo"]["makespan_vs_optimum"]
    for name in ("gantt.png", "comparison.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_online_runs_pool_every_job_of_a_spec_into_one_stream():
    ev = evaluate([f"wfcommons:{WFCOMMONS}"], "preset:workstation-4", ["fifo", "sjf"],
                  arrivals="poisson", load=0.85, seeds=2, perturb="all")
    assert [(r.scheduler, r.seed) for r in ev.results] == [
        ("fifo", 0), ("sjf", 0), ("fifo", 1), ("sjf", 1)]
    assert all(r.optimum is None for r in ev.results)
    assert any("synthetic" in n for n in ev.notes)
    summary = ev.summary()
    # one of the two is the best on each episode, so a ratio of exactly 1 exists
    assert min(s["jct_vs_best"] for s in summary.values()) >= 1.0
    assert summary["fifo"]["episodes"] == 2


def test_every_scheduler_sees_the_same_episode_for_a_seed():
    ev = evaluate(["synthetic:layered?tasks=30&jobs=3"], "preset:workstation-4",
                  ["fifo", "heft"], arrivals="poisson", seeds=1, perturb="all")
    a, b = ev.samples["fifo"], ev.samples["heft"]
    assert a.job_arrival == b.job_arrival
    assert a.table.task_ids == b.table.task_ids


def test_episodes_run_in_worker_processes_give_the_results_of_one_process():
    # every episode is its own: the schedulers, reused across episodes in one
    # process and built afresh in each worker, must schedule alike
    args = (["synthetic:mixed?jobs=8"], "preset:workstation-4",
            ["fifo", "share", "cp", "heft", "tetris", "las"])
    kw = dict(arrivals="poisson", seeds=2, perturb="all")
    one, two = evaluate(*args, **kw), evaluate(*args, **kw, workers=2)
    assert [(r.scheduler, r.seed, r.metrics, r.decisions) for r in two.results] == \
        [(r.scheduler, r.seed, r.metrics, r.decisions) for r in one.results]
    assert two.samples.keys() == one.samples.keys()
    assert two.samples["share"].trace == one.samples["share"].trace


def test_a_learned_scheduler_runs_in_worker_processes_too():
    # rl: is registered by importing agents: a spawned worker must import it as well
    import agents  # noqa: F401

    args = (["synthetic:mixed?jobs=3"], "preset:workstation-4", ["share", "rl:default"])
    one = evaluate(*args, arrivals="poisson", seeds=2)
    two = evaluate(*args, arrivals="poisson", seeds=2, workers=2)
    assert [(r.scheduler, r.metrics) for r in two.results] == \
        [(r.scheduler, r.metrics) for r in one.results]


def test_an_episode_failing_in_a_worker_fails_the_run_with_its_error():
    import tests.failing_scheduler  # noqa: F401  (registers it; workers import it too)

    try:
        with pytest.raises(SchedulerError, match="refuses to decide"):
            evaluate(["synthetic:mixed?jobs=3"], "identical:2", ["fifo", "failing"],
                     arrivals="poisson", seeds=3, workers=2)
    finally:
        SCHEDULERS.pop("failing")


def test_a_negative_worker_count_is_refused_naming_the_flag():
    with pytest.raises(InputError, match="--workers"):
        evaluate(["synthetic:mixed?jobs=2"], "identical:2", ["fifo"], workers=-1)


def test_bench_sim_prints_json_with_decision_rates():
    proc = subprocess.run([sys.executable, "-m", "rlsched", "bench", "sim", "--tasks", "100",
                           "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["tasks"] == 100 and doc["devices"] == 8
    assert doc["fifo_decisions_per_s"] > 0 and doc["heft_decisions_per_s"] > 0


def test_bench_headroom_prints_the_base_and_its_hindsight_lookahead_per_episode():
    proc = subprocess.run([sys.executable, "-m", "rlsched", "bench", "headroom", "--workload",
                           "synthetic:pipeline?jobs=4", "--seeds", "2", "--seed-offset", "7"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [e["seed"] for e in doc["episodes"]] == [7, 8]
    for e in doc["episodes"]:
        assert e["ratio"] == round(e["lookahead_avg_jct"] / e["base_avg_jct"], 4)
        assert 0 < e["ratio"] <= 1.0 and e["departed"] <= e["decisions"]
        assert e["placements"] <= e["decisions"]
    assert doc["base"] == "share" and doc["candidates"][-1] == "wait"


def _row(scheduler: str, seed: int, avg_jct: float, makespan: float):
    from rlsched.evaluation.evaluate import EpisodeResult
    from rlsched.metrics import Metrics

    return EpisodeResult(scheduler, "w", "online", seed, Metrics(
        makespan=makespan, avg_jct=avg_jct, weighted_jct=avg_jct, slowdown=1.0, utilization=0.5,
        deadline_misses=0, lower_bound=1.0, jct_lower_bound=1.0, failed_attempts=0), None, 10, 0.1)


def test_a_learned_scheduler_is_compared_with_the_best_non_learned_one_paired():
    from rlsched.evaluation.evaluate import Evaluation

    ev = Evaluation(config={})
    for seed, size in enumerate([100.0, 400.0, 250.0, 900.0, 120.0]):  # very unequal episodes
        ev.results += [_row("fifo", seed, 2.0 * size, 50.0), _row("share", seed, size, 60.0),
                       _row("rl:x", seed, 0.9 * size, 55.0 + seed)]
    vs = ev.versus_best_non_learned()["rl:x"]
    jct, mk = vs["avg_jct"], vs["makespan"]
    # 0.9 x share on every episode: the ratio and its whole interval are 0.9,
    # however unequal the episodes (the bootstrap resamples them in pairs)
    assert jct["against"] == "share" and jct["episodes"] == 5
    assert [jct["ratio"], *jct["ci95"]] == pytest.approx([0.9, 0.9, 0.9], abs=1e-12)
    # makespan: fifo is the best non-learned; rl varies around it, so the interval is wide
    assert mk["against"] == "fifo" and abs(mk["ratio"] - 57.0 / 50.0) < 1e-12
    assert mk["ci95"][0] < mk["ratio"] < mk["ci95"][1]
    assert Evaluation(config={}, results=[r for r in ev.results if r.scheduler != "rl:x"]
                      ).versus_best_non_learned() == {}


def test_the_heuristics_chosen_in_hindsight_take_each_episodes_best():
    """The best heuristic of each episode, known after the fact: the mean
    of those bests against the best single heuristic's mean, with how often
    each was chosen; a learned policy and a bound are not among them."""
    from rlsched.evaluation.evaluate import Evaluation

    ev = Evaluation(config={"bounds": ["oracle:share"]})
    jcts = {"sjf": [100.0, 300.0, 200.0, 50.0], "share": [120.0, 250.0, 210.0, 40.0],
            "rl:x": [1.0] * 4, "oracle:share": [1.0] * 4}
    for name, values in jcts.items():
        ev.results += [_row(name, seed, v, 2.0 * v) for seed, v in enumerate(values)]
    jct = ev.hindsight_choice()["avg_jct"]
    # the episodes' bests: 100, 250, 200, 40; the best single one is share (155 against 162.5)
    assert jct["mean"] == pytest.approx((100 + 250 + 200 + 40) / 4)
    assert jct["against"] == "share" and jct["ratio"] == pytest.approx(147.5 / 155.0)
    assert jct["picks"] == {"sjf": 2, "share": 2} and jct["episodes"] == 4
    assert ev.hindsight_choice()["makespan"]["ratio"] == pytest.approx(147.5 / 155.0)
    # an episode one of them missed is left out; one heuristic alone chooses nothing
    ev.results.append(_row("sjf", 9, 1.0, 1.0))
    assert ev.hindsight_choice()["avg_jct"]["episodes"] == 4
    alone = Evaluation(config={}, results=[r for r in ev.results if r.scheduler == "sjf"])
    assert alone.hindsight_choice() == {}


def test_the_gantt_legend_says_what_colours_hatching_and_dotted_lines_mean(wfcommons_instances):
    from rlsched.evaluation.plots import _short, gantt_legend
    from rlsched.pool import preset_pool
    from tests.helpers import simulate

    result, _ = simulate(wfcommons_instances[0], preset_pool("workstation-4"))
    labels = [h.get_label() for h in gantt_legend(result)]
    assert labels[:len(result.table.jobs)] == [j.name for j in result.table.jobs]
    assert labels[-2:] == ["attempt lost to a failure", "a job arrives"]
    many = [h.get_label() for h in gantt_legend(result, most_jobs=0)]
    assert many[0] == f"... {len(result.table.jobs)} more jobs"
    assert _short("rl:checkpoints/default.zip") == "rl:default" and _short("heft") == "heft"


def test_bench_all_prints_every_speed_benchmark_in_one_json_document():
    import json
    import subprocess
    import sys

    from tests.helpers import ROOT

    proc = subprocess.run([sys.executable, "-m", "rlsched", "bench", "all", "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"sim", "search", "serve", "policy", "env"}
    assert doc["sim"]["fifo_decisions_per_s"] > 0 and doc["env"]["steps_per_s"] > 0
    assert doc["serve"]["tasks"] == 20 and doc["policy"]["median_ms"] > 0


def test_the_comparison_plot_never_marks_a_bound_as_the_best():
    from rlsched.evaluation.plots import best_contender

    names = ["sjf", "share", "oracle:share", "rl:default"]
    assert best_contender(names, [1.20, 1.15, 1.00, 1.12]) == 1.12
    assert best_contender(names, [1.20, float("nan"), 1.00, None]) == 1.20
    assert best_contender(["oracle:share"], [1.0]) is None


@pytest.mark.parametrize("seeds, interval", [(1, False), (3, True)])
def test_evaluate_prints_a_paired_interval_only_over_enough_episodes(capsys, seeds, interval):
    from rlsched.cli import main

    assert main(["evaluate", "--workload", "synthetic:mixed?jobs=3", "--pool", "identical:2",
                 "--arrivals", "poisson", "--seeds", str(seeds), "--scheduler",
                 "share,rl:default"]) == 0
    (line,) = [s for s in capsys.readouterr().out.splitlines() if s.startswith("rl:default: ")]
    assert ("95% CI" in line) == interval
    assert ("1 episode(s), too few for an interval" in line) == (not interval)
