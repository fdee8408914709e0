"""One-step lookahead: try each candidate placement, play the rest of the
episode out with a base heuristic, keep the candidate that ends best.

This is the policy-improvement step of rollout algorithms (Bertsekas): the
lookahead policy is at least as good as its base on the states it is asked
about, given the same future. Here the future is the simulator's own
(:meth:`~rlsched.sim.Simulator.fork` copies the episode with its arrivals and
perturbations still to come), so the lookahead sees what no live scheduler
can: it is a *hindsight teacher* for training, in the way a cache-replacement
policy is taught by Belady's clairvoyant one, never a scheduler to deploy.

With ``futures=K`` it plans as a live scheduler would have to: each play-out
knows only the jobs that have arrived and faces perturbations drawn anew
(``fork(weather=k, arrivals=False)``), and a candidate scores its mean over K
of them. The gap between the two measures how much of the hindsight gain is
foresight (``rlsched bench headroom``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rlsched.errors import SchedulerError
from rlsched.schedulers import Scheduler
from rlsched.sim import SimResult, Simulator
from rlsched.view import Placement

OBJECTIVES = ("jct", "makespan")


def play_out(sim: Simulator, first: Sequence[Placement], base: Scheduler,
             objective: str = "jct", weather: int | None = None, arrivals: bool = True) -> float:
    """The objective of the episode if ``first`` is applied now (empty: wait)
    and ``base`` decides every step after; ``sim`` itself is left as it is.

    ``jct``: the sum of job completion times; ``makespan``: the last finish
    (of the jobs the play-out finishes); ``inf`` if the simulator refuses
    ``first``. ``weather`` and ``arrivals`` say what future the play-out
    faces (:meth:`~rlsched.sim.Simulator.fork`); by default, the episode's own.
    """
    twin = sim.fork(weather, arrivals)
    base.reset(sim.seed)  # a planning base (heft) must not carry plans across forks
    try:
        view = twin.step(list(first))
    except SchedulerError:  # the simulator refuses it (waiting with nothing to come)
        return math.inf
    while view is not None:
        view = twin.step(base.decide(view))
    done = [(f, job.arrival) for f, job in zip(twin.job_finish, twin.table.jobs)
            if not math.isnan(f)]  # jobs that never arrived in the play-out never finish
    if objective == "makespan":
        return max(f for f, _ in done)
    return sum(f - a for f, a in done)


def best_candidate(sim: Simulator, candidates: Sequence[Placement | None], base: Scheduler,
                   objective: str = "jct", margin: float = 0.0, futures: int = 0
                   ) -> tuple[Placement | None, dict]:
    """The candidate (``None``: wait) whose play-out ends best, and each
    distinct candidate's objective. Ties go to the earlier candidate, so the
    base's own choice, listed first, wins unless another is strictly better;
    a single distinct candidate is returned without any play-out.

    :param margin: the first candidate is kept unless another beats it by
        more than this fraction of its objective. Most deviations a
        hindsight play-out finds gain a second or two by luck (a throttling
        episode that happens to miss a task); a margin keeps only those that
        matter, the ones worth teaching.
    :param futures: 0: play out the episode's own future (hindsight). K > 0:
        without foresight, each candidate's objective is its mean over K
        play-outs that know only the jobs already arrived and face weather
        drawn anew (the same K draws for every candidate).
    """
    distinct: list[Placement | None] = list(dict.fromkeys(candidates))
    if len(distinct) == 1:
        return distinct[0], {}
    def score(c: Placement | None) -> float:
        first = [] if c is None else [c]
        if not futures:
            return play_out(sim, first, base, objective)
        return sum(play_out(sim, first, base, objective, k, False) for k in range(futures)) / futures

    scores = {c: score(c) for c in distinct}
    best = min(distinct, key=lambda c: scores[c])
    first = distinct[0]
    if scores[first] - scores[best] <= margin * scores[first]:
        best = first
    return best, scores


def lookahead_episode(sim: Simulator, base: Scheduler, others: Sequence[Scheduler],
                      objective: str = "jct", futures: int = 0, margin: float = 0.0,
                      progress: Callable[[float], None] | None = None) -> tuple[SimResult, int, int]:
    """Run ``sim`` (fresh) to the end with the one-step lookahead over ``base``:
    at each decision the candidates are the first placement of ``base`` and of
    each of ``others``, and waiting; the best play-out wins, one placement at
    a time. Returns the result, how many decisions departed from ``base``,
    and how many decisions (placements and waits) there were.

    With ``futures=0`` it knows the future, so its ratio to ``base`` measures
    how much a single better decision at a time could gain *with foresight*:
    an optimistic bound on what a learned policy can take from ``base`` by
    deviating. With ``futures=K`` it plans without foresight
    (:func:`best_candidate`), as a live scheduler would have to.

    :param progress: called with the simulated time after each decision
    """
    view = sim.reset()
    departed = asked = 0
    while view is not None:
        asked += 1
        own = base.decide(view)
        candidates: list[Placement | None] = [own[0] if own else None]
        for other in others:
            other.reset(sim.seed)
            placements = other.decide(view)
            candidates.append(placements[0] if placements else None)
        candidates.append(None)
        best, _ = best_candidate(sim, candidates, base, objective, margin, futures)
        departed += best != candidates[0]
        view = sim.step([] if best is None else [best])
        if progress:
            progress(sim.now)
    base.reset(sim.seed)
    return sim.result(), departed, asked
