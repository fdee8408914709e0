"""The search schedulers: valid, never worse than HEFT, deterministic under a
seed and an evaluation budget, and a source of demonstrations."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rlsched.arrivals import online
from rlsched.demonstrations import demonstrations
from rlsched.evaluation.evaluate import evaluate, run_episode
from rlsched.metrics import measure, optimum_for
from rlsched.pool import identical_pool, preset_pool
from rlsched.schedulers import make_scheduler
from rlsched.schedulers.search_engine import Budget, SearchProblem, genetic
from rlsched.sim import Simulator
from rlsched.sources.synthetic import generate
from tests.helpers import WFCOMMONS, check_schedule

EVALS = 1500


def search(name, evaluations=EVALS):
    return make_scheduler(name, search_evaluations=evaluations)


def makespan(instance, pool, scheduler, seed=0):
    return measure(run_episode(instance, pool, scheduler, seed)).makespan


# the STG instances where HEFT misses the optimum on 4 devices
HARD_ON_4 = ["rand0023", "rand0039", "rand0051", "rand0064", "rand0022"]


@pytest.mark.parametrize("name", ["ga", "sa"])
def test_search_is_never_worse_than_heft_nor_better_than_the_optimum(stg_instances, name):
    pool = identical_pool(4)
    picked = [i for i in stg_instances if i.name in HARD_ON_4]
    gains = []
    for inst in picked:
        heft = makespan(inst, pool, make_scheduler("heft"))
        found = makespan(inst, pool, search(name))
        assert optimum_for(inst.optimum, pool) - 1e-6 <= found <= heft + 1e-9
        gains.append(heft - found)
    assert sum(gains) > 0  # and it does find better schedules


def test_the_same_seed_and_evaluations_give_the_same_schedule(stg_instances):
    inst = next(i for i in stg_instances if i.name == HARD_ON_4[0])
    pool = identical_pool(4)
    a = run_episode(inst, pool, search("ga"), seed=7)
    b = run_episode(inst, pool, search("ga"), seed=7)
    assert a.trace == b.trace


def test_decoding_a_population_gives_valid_schedules_for_every_candidate(stg_instances):
    view = Simulator(stg_instances[3], preset_pool("workstation-4")).reset()
    problem = SearchProblem.from_view(view)
    rng = np.random.default_rng(0)
    keys = rng.random((16, problem.n_tasks))
    devices = rng.integers(0, 4, size=(16, problem.n_tasks))
    decoded = problem.decode(keys, devices)
    children = problem.children
    for k in range(16):
        start, finish = decoded.start[k], decoded.finish[k]
        parents, kids = np.nonzero(children)
        assert np.all(start[kids] >= finish[parents] - 1e-9)  # precedence
        for d in range(4):  # one task at a time per device
            on = np.flatnonzero(decoded.device[k] == d)
            spans = sorted(zip(start[on], finish[on]))
            assert all(s2 >= f1 - 1e-9 for (_, f1), (s2, _) in zip(spans, spans[1:]))
        # one job arriving at 0: its completion time, plus the small tie-breaker
        tie = 1e-3 * finish.mean()
        assert finish.max() <= decoded.objective[k] <= finish.max() + tie + 1e-9


def test_the_heft_seed_decodes_no_worse_than_heft(wfcommons_instances):
    pool = preset_pool("workstation-4")
    for inst in wfcommons_instances[:4]:
        view = Simulator(inst, pool).reset()
        problem = SearchProblem.from_view(view)
        keys, devices = problem.seeds(view)
        seeded = problem.decode(keys[:1], devices[:1]).finish.max()
        assert seeded <= makespan(inst, pool, make_scheduler("heft")) + 1e-6


def test_on_wfcommons_batch_ga_is_no_worse_than_heft():
    ev = evaluate([f"wfcommons:{WFCOMMONS}"], "preset:workstation-4", ["heft", "ga"],
                  search_evaluations=600, estimates="exact")  # a search is as good as its costs
    summary = ev.summary()
    assert summary["ga"]["makespan"] <= summary["heft"]["makespan"] + 1e-9
    assert ev.search_history["ga"]


def test_online_the_search_replans_on_arrivals_and_keeps_the_invariants():
    pool = preset_pool("workstation-4")
    inst = online([generate("mixed", {"jobs": "5"}, 1, "s")], pool, 0.85,
                  np.random.default_rng(1))
    sched = search("ga", 300)
    result = run_episode(inst, pool, sched, seed=2)
    assert sched.plans >= 3
    check_schedule(pool, result, measure(result))


def test_the_genetic_algorithm_improves_on_its_seeds(stg_instances):
    inst = next(i for i in stg_instances if i.name == "rand0005")
    view = Simulator(inst, identical_pool(4)).reset()
    problem = SearchProblem.from_view(view)
    keys, devices = problem.seeds(view)
    result = genetic(problem, keys, devices, np.random.default_rng(0), Budget(evaluations=3000))
    history = [b for _, b in result.history]
    assert history == sorted(history, reverse=True)  # the best never gets worse
    assert result.objective < problem.decode(keys, devices).objective.min()
    assert result.evaluations >= 3000


def test_demonstrations_replay_the_teacher_exactly(stg_instances):
    inst = next(i for i in stg_instances if i.name == HARD_ON_4[1])
    pool = identical_pool(4)
    pairs, result = demonstrations(inst, pool, search("ga"), seed=3)
    for view, placement in pairs:
        if placement is None:
            assert view.running  # waiting only while something runs
        else:
            assert placement.task in view.ready and view.fits(placement.task, placement.device)
    batch = run_episode(inst, pool, search("ga"), seed=3)
    assert measure(result).makespan == pytest.approx(measure(batch).makespan)


def test_bench_search_and_the_cli_flags(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rlsched", "bench", "search", "--seconds",
                           "0.3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["evaluations_per_s"] > 0
    proc = subprocess.run([sys.executable, "-m", "rlsched", "evaluate", "--workload",
                           f"wfcommons:{WFCOMMONS / 'bacass-dirt02-001.json'}", "--pool",
                           "preset:workstation-4", "--scheduler", "heft,ga,sa",
                           "--search-evaluations", "200", "--plot", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "convergence.png").stat().st_size > 0
