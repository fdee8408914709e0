"""The ready set kept between decisions (``ReadyCursor``, ``ReadyByJob``,
``RankedReady``) orders the queue exactly as sorting the whole of
``view.ready`` would, at
every decision of an episode, whether it follows the view's log or rebuilds
from a view without one (as the live daemon's are)."""

from __future__ import annotations

import math
from itertools import chain

import numpy as np
import pytest

from rlsched.arrivals import batch, poisson
from rlsched.estimates import EstimateModel
from rlsched.pool import identical_pool
from rlsched.schedulers import make_scheduler
from rlsched.schedulers.ready_set import ReadyByJob
from rlsched.schedulers.upward_ranks import RankedReady, upward_rank
from rlsched.sim import Simulator
from rlsched.sources.synthetic import generate
from rlsched.view import ReadyCursor


def _views(generator: str, params: dict[str, str], estimates: str, stream: bool = False):
    """Every view of an episode of ``share`` (which places and shares, so the
    queue grows and shrinks), each checked before the simulator moves on;
    ``stream``: the jobs arrive as a Poisson stream, not all at once."""
    jobs = generate(generator, params, 0, "test")
    instance = poisson(jobs.jobs, identical_pool(4), 0.9, np.random.default_rng(0)) if stream \
        else batch(jobs)
    sim = Simulator(instance, identical_pool(4), 0, estimates=EstimateModel.parse(estimates))
    sched = make_scheduler("share")
    view = sim.reset()
    while view is not None:
        yield view
        view = sim.step(sched.decide(view))


@pytest.mark.parametrize("generator, params, estimates", [
    ("layered", {"jobs": "6", "tasks": "30"}, "default"),
    # with no estimates every task of a kind is predicted alike: jobs tie on
    # remaining work, and their runs must merge
    ("sweep", {"jobs": "6", "points": "5"}, "none"),
])
def test_runs_in_order_are_the_full_sort(generator, params, estimates) -> None:
    # one ReadyByJob per order (its cache holds one order's runs), each kept
    # by the log or rebuilt from views without one
    kept = {(order, log): ReadyByJob() for order in ("sjf", "share", "beliefs")
            for log in (True, False)}
    followed = 0  # decisions where a belief moved and the log said whose
    checked = ties = 0
    for view in _views(generator, params, estimates):
        job_of, remaining, work = view.table.job_of, view.job_remaining, view.predicted
        by_job = sorted(view.ready, key=lambda t: remaining[job_of[t]])
        def longest_first(t: int, work=work) -> tuple[float, int]:
            return -work[t], t

        by_job_then_work = sorted(view.ready, key=lambda t: (remaining[job_of[t]],
                                                             *longest_first(t)))
        for log in (True, False):
            v = view if log else view._replace(ready_log=None)
            sjf, share = kept["sjf", log], kept["share", log]
            sjf.sync(v)
            share.sync(v)
            assert list(chain.from_iterable(sjf.groups(remaining))) == by_job
            assert list(chain.from_iterable(share.groups(
                remaining, longest_first, v.open_knowledge))) == by_job_then_work
            # share's own: only the jobs with a ready task of a re-predicted kind
            # drop their sorted runs and least prediction
            beliefs = kept["beliefs", log]
            beliefs.sync(v)
            moved = beliefs._token != v.open_knowledge and beliefs._beliefs[1] < v.belief_mark
            beliefs.keep_beliefs(v)
            followed += moved and log
            assert beliefs.least(work) == {j: min(work[t] for t in v.ready if job_of[t] == j)
                                           for j in {job_of[t] for t in v.ready}}
            assert list(chain.from_iterable(beliefs.groups(
                remaining, longest_first, v.open_knowledge))) == by_job_then_work
        jobs = {job_of[t] for t in view.ready}
        ties += len(jobs) > len({remaining[j] for j in jobs})
        checked += 1
    assert checked > 20
    assert followed > 10  # beliefs moved, and the log said whose
    if generator == "sweep":
        assert ties > 0  # the merging was exercised


def test_jobs_sorted_only_as_far_as_read_give_the_runs_of_the_full_sort() -> None:
    # no estimates: jobs tie on remaining work, so the least key is often several jobs'
    heads = 0
    for view in _views("sweep", {"jobs": "6", "points": "5"}, "none"):
        ready = ReadyByJob()
        ready.sync(view)
        remaining = view.job_remaining
        jobs = ready.jobs(remaining)
        full, at = [], 0
        while at < len(jobs):
            run, at = ready.run(jobs, at, remaining, None)
            full.append(run)
        order = ready.order(remaining)
        first = order.run(0, None)
        if not full:
            assert first is None
            continue
        assert first is not None and first[0] == full[0]
        # read no further: what is left are the jobs the full sort has after the first run
        assert sorted(order.after(first[1])) == sorted(jobs[first[1]:])
        heads += first[1] > 1
        runs, at = [first[0]], first[1]
        while (got := order.run(at, None)) is not None:
            runs.append(got[0])
            at = got[1]
        assert runs == full
        assert order.after(at) == []
        assert list(ready.order(remaining).runs()) == full
    assert heads > 0  # a first run merged jobs of equal work


def test_jobs_with_a_nan_key_are_sorted_as_a_whole() -> None:
    view = next(v for v in _views("layered", {"jobs": "6", "tasks": "30"}, "default")
                if len({v.table.job_of[t] for t in v.ready}) > 3)
    ready = ReadyByJob()
    ready.sync(view)
    some = next(iter(ready.job_ids()))
    key = tuple(math.nan if j == some else r for j, r in enumerate(view.job_remaining))
    assert ready.order(key).after(0) == ready.jobs(key)


def test_a_cursor_replays_what_changed_and_starts_again_on_a_new_log() -> None:
    views = _views("layered", {"jobs": "2", "tasks": "20"}, "default")
    cursor, mine = ReadyCursor(), set()
    for view in views:
        changes = cursor.changes(view)
        if changes is None:
            mine = set(view.ready)
        else:
            for e in changes:
                (mine.add if e >= 0 else mine.discard)(e if e >= 0 else ~e)
        assert mine == set(view.ready)
    other = next(_views("layered", {"jobs": "2", "tasks": "20"}, "default"))
    assert cursor.changes(other) is None  # another episode's log


@pytest.mark.parametrize("estimates, stream", [("default", False), ("noisy:1", False),
                                               ("none", False), ("default", True)])
def test_ranks_kept_by_the_logs_are_the_full_pass_over_the_current_beliefs(estimates, stream
                                                                           ) -> None:
    # the runtime model re-predicts kinds of task as they finish: each view's
    # order must be that of upward ranks computed afresh from its predictions
    # (on a stream, with kinds whose tasks span finished, running and
    # unarrived jobs)
    kept, rebuilt = RankedReady(), RankedReady()
    checked = moved = 0
    workload = ("mixed", {"jobs": "40"}) if stream else ("layered", {"jobs": "6", "tasks": "30"})
    for view in _views(*workload, estimates, stream):
        rank = upward_rank(view.predicted, view.table.children)
        assert list(kept.order(view)) == sorted(view.ready, key=lambda t: -rank[t])
        assert list(rebuilt.order(view._replace(belief_log=None))) == \
            sorted(view.ready, key=lambda t: -rank[t])
        checked += 1
        moved += view.belief_mark > 0
    assert checked > 20
    assert moved > 10  # beliefs changed under the kept ranks
