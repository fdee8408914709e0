"""heft's shortcuts give the plans the plain algorithm gives: the insertion
search skipped where its answer is known, and a plan's per-task costs and
open jobs kept for the next plan."""

from __future__ import annotations

import numpy as np
import pytest

from rlsched.arrivals import batch, online
from rlsched.estimates import EstimateModel
from rlsched.evaluation.evaluate import run_episode
from rlsched.lookahead import play_out
from rlsched.perturbations import Perturbations
from rlsched.pool import identical_pool, preset_pool
from rlsched.schedulers import heft
from rlsched.schedulers.heft import HeftScheduler, _earliest_finish, _earliest_gap, _insert, _Spare, heft_plan
from rlsched.schedulers.plan import Plan
from rlsched.sim import Simulator
from rlsched.sources.specs import resolve_workload
from rlsched.sources.wfcommons import load_wfcommons
from rlsched.view import ClusterView
from tests.helpers import WFCOMMONS


def random_device(rng: np.random.Generator) -> tuple[list[float], list[float], dict[int, float]]:
    """One device's planned intervals, laid down as a plan does (each at
    the earliest gap from a random ready time), with the widest-gap bound."""
    starts: list[float] = []
    ends: list[float] = []
    widest = {0: -np.inf}
    for _ in range(int(rng.integers(1, 12))):
        ready, length = float(rng.uniform(0, 50)), float(rng.choice([1e-13, 0.5, 2.0, 7.0]))
        s = _earliest_gap(starts, ends, ready, length) if starts else ready
        _insert(starts, ends, s, s + length, widest, 0)
    return starts, ends, widest


@pytest.mark.parametrize("seed", range(40))
def test_the_insertion_search_is_skipped_only_where_its_answer_is_known(seed):
    rng = np.random.default_rng(seed)
    starts, ends, widest = random_device(rng)
    spare = _Spare({}, {0: starts})
    for _ in range(50):
        ready = float(rng.choice([rng.uniform(0, 80), starts[0], ends[-1]]))
        c = float(rng.choice([1e-13, 3e-12, rng.uniform(0.1, 9.0)]))
        best = _earliest_finish({0: c}, {0: starts}, {0: ends}, widest, spare, ready)
        assert best is not None
        assert best[1] == _earliest_gap(starts, ends, ready, c)


class PlainHeft(HeftScheduler):
    """heft with nothing kept from one plan to the next."""

    def make_plan(self, view: ClusterView) -> Plan:
        return heft_plan(view)


def plain_earliest_finish(cost, starts, ends, widest, spare, ready, uniform=False):
    """The scan as the algorithm states it: every device searched, in order."""
    best = None
    for d, c in cost.items():
        if not starts[d]:
            if not spare.first(d):
                continue
            s = ready
        else:
            s = _earliest_gap(starts[d], ends[d], ready, c)
        if best is None or s + c < best[0] - 1e-12:
            best = (s + c, s, d, c)
    return best


def test_heft_plans_as_the_plain_algorithm_with_tasks_of_no_length(monkeypatch):
    # methylseq has GPU tasks of zero runtime: one placed at another's start
    # goes after it, and the intervals of its device are out of order
    inst = batch(load_wfcommons(WFCOMMONS / "methylseq-dirt02-001.json")[0])
    assert any(t.work == 0 for j in inst.jobs for t in j.tasks if t.gpus)
    pool = identical_pool(4)
    fast = run_episode(inst, pool, HeftScheduler(), 0, estimates=EstimateModel("exact")).trace
    monkeypatch.setattr(heft, "_earliest_finish", plain_earliest_finish)
    plain = run_episode(inst, pool, PlainHeft(), 0, estimates=EstimateModel("exact")).trace
    assert fast == plain


def test_what_a_plan_keeps_is_dropped_when_asked_about_an_earlier_time():
    # the lookahead asks its base about a fork played to the end, then about
    # the simulator again: heft must answer as if it had kept nothing
    source = resolve_workload("synthetic:mixed?jobs=8")
    inst = online(source.instances(0), preset_pool("workstation-4"), 0.85,
                  np.random.default_rng([0, 17]), source="t")
    sim = Simulator(inst, preset_pool("workstation-4"), 0,
                    estimates=EstimateModel.parse("default"))
    view = sim.reset()
    for _ in range(6):
        view = sim.step(HeftScheduler().decide(view))
    answers = []
    for sched in (HeftScheduler(), PlainHeft()):
        sched.decide(view)
        play_out(sim, [], sched)
        answers.append(sched.decide(view))
    assert answers[0] == answers[1]


@pytest.mark.parametrize("pool", [identical_pool(16), preset_pool("lab-8")])
def test_what_a_plan_keeps_for_the_next_changes_no_plan(pool):
    # an online stream under perturbations: arrivals, throttled clocks and
    # failing devices change the tasks, their beliefs and the device classes
    source = resolve_workload("synthetic:mixed?jobs=30")
    inst = online(source.instances(3), pool, 0.9, np.random.default_rng([3, 17]), source="t")
    # under the default estimates, beliefs move as tasks finish
    traces = [run_episode(inst, pool, sched, 3, Perturbations.parse("all"),
                          EstimateModel.parse("default")).trace
              for sched in (HeftScheduler(), PlainHeft())]
    assert traces[0] == traces[1]
    assert len(traces[0]) >= inst.n_tasks
