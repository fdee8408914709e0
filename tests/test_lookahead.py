"""One-step lookahead over a base heuristic, on forks of the simulator."""

from __future__ import annotations

import numpy as np

from rlsched.arrivals import online
from rlsched.evaluation.evaluate import run_episode
from rlsched.lookahead import best_candidate, play_out
from rlsched.perturbations import Perturbations
from rlsched.pool import preset_pool
from rlsched.schedulers import make_scheduler
from rlsched.sim import Simulator

WEATHER = Perturbations.parse("all")


def start(wfcommons_instances, seed=3):
    pool = preset_pool("workstation-4")
    inst = online(wfcommons_instances[:5], pool, 0.85, np.random.default_rng(seed))
    sim = Simulator(inst, pool, seed=seed, perturbations=WEATHER)
    return sim, sim.reset()


def total_jct(result):
    return sum(f - a for f, a in zip(result.job_finish, result.job_arrival))


def test_playing_out_the_base_is_the_base_and_leaves_the_episode_as_it_was(wfcommons_instances):
    sim, view = start(wfcommons_instances)
    share = make_scheduler("share")
    cost = play_out(sim, share.decide(view), share)
    direct = run_episode(sim.instance, sim.pool, make_scheduler("share"), sim.seed, WEATHER)
    assert cost == total_jct(direct)
    assert sim.now == view.time and not sim.trace and sim._view() == view
    assert play_out(sim, share.decide(view), share, "makespan") == max(direct.job_finish)


def test_the_best_candidate_is_the_one_whose_play_out_ends_best(wfcommons_instances):
    sim, view = start(wfcommons_instances)
    share = make_scheduler("share")
    for _ in range(40):  # somewhere with several ready tasks and something running
        view = sim.step(share.decide(view)[:1])
        if len(view.ready) > 1 and view.running:
            break
    candidates = [share.decide(view)[0], *make_scheduler("fifo").decide(view)[:2], None]
    best, scores = best_candidate(sim, candidates + [None], share)
    assert list(scores) == list(dict.fromkeys(candidates))  # each distinct one, once, in order
    for c, cost in scores.items():
        assert cost == play_out(sim, [] if c is None else [c], share)
    assert scores[best] == min(scores.values())
    assert best_candidate(sim, [candidates[0]] * 2, share) == (candidates[0], {})  # no play-out


def test_a_margin_keeps_the_first_candidate_unless_another_is_clearly_better(
        wfcommons_instances):
    sim, view = start(wfcommons_instances)
    share = make_scheduler("share")
    candidates = [share.decide(view)[0], *make_scheduler("fifo").decide(view)[:3]]
    best, scores = best_candidate(sim, candidates, share)
    first = candidates[0]
    gain = (scores[first] - scores[best]) / scores[first]
    assert best_candidate(sim, candidates, share, margin=gain + 1e-9)[0] == first
    if gain > 0:
        assert best_candidate(sim, candidates, share, margin=gain / 2)[0] == best


def test_waiting_when_nothing_is_left_to_happen_is_refused_not_chosen():
    from rlsched.pool import identical_pool
    from rlsched.workload import Instance, Job, Task

    inst = Instance("one", (Job("j", (Task("a", 10.0),)),), source="test")
    sim = Simulator(inst, identical_pool(1))
    view = sim.reset()
    fifo = make_scheduler("fifo")
    place = fifo.decide(view)[0]
    assert play_out(sim, [], fifo) == float("inf")
    assert best_candidate(sim, [None, place], fifo)[0] == place


def test_the_hindsight_lookahead_departs_from_its_base_only_to_finish_jobs_sooner(
        wfcommons_instances):
    from rlsched.lookahead import lookahead_episode
    from rlsched.metrics import measure

    sim, _ = start(wfcommons_instances, seed=5)
    base = measure(run_episode(sim.instance, sim.pool, make_scheduler("share"), sim.seed,
                               WEATHER))
    result, departed, asked = lookahead_episode(sim, make_scheduler("share"),
                                         [make_scheduler("heft"), make_scheduler("sjf")])
    looked = measure(result)
    assert sorted(a.task for a in result.trace if a.ok) == list(range(result.table.n_tasks))
    assert 0 < departed < asked and asked >= result.decisions
    assert looked.avg_jct < base.avg_jct


def test_without_foresight_a_candidate_scores_its_mean_over_drawn_futures(wfcommons_instances):
    sim, view = start(wfcommons_instances)
    for _ in range(20):
        view = sim.step(make_scheduler("share").decide(view)[:1])
    share = make_scheduler("share")
    assert view.running  # so waiting is a candidate too
    candidates = [share.decide(view)[0], None]
    _, scores = best_candidate(sim, candidates, share, futures=2)
    assert set(scores) == set(candidates)
    for c in candidates:
        first = [] if c is None else [c]
        drawn = [play_out(sim, first, share, "jct", k, False) for k in range(2)]
        assert scores[c] == sum(drawn) / 2
        assert scores[c] != play_out(sim, first, share)  # not the episode's own future
