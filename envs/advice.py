"""Advice: what the classic heuristics would do now, as observation features.

A learned scheduler should never have to rediscover what a good heuristic
already knows. So the observation carries, for each of a few advisors, the
placement it would make first in this view (its task, its device, or that it
would wait). The policy learns when to follow which advisor, and where to
deviate: ``share`` and ``tetris`` are the strongest here on average JCT with
jobs arriving online, ``cp`` and ``heft`` on the makespan of a batch of one
DAG. All are cheap (heft plans once per change of the world and then follows
its plan), and all are deterministic, so a policy sees the same advice in
training, evaluation and live serving.
"""

from __future__ import annotations

from rlsched.schedulers import Scheduler, make_scheduler
from rlsched.view import ClusterView, Placement

#: the advisors, in the order of their feature columns
ADVISORS = ("share", "heft", "cp", "tetris")


class Advisors:
    """One instance of each advisor, reset with the episode."""

    def __init__(self, names: tuple[str, ...] = ADVISORS) -> None:
        self.names = names
        self.schedulers: list[Scheduler] = [make_scheduler(n) for n in names]

    def reset(self, seed: int = 0) -> None:
        for s in self.schedulers:
            s.reset(seed)

    def advise(self, view: ClusterView) -> list[Placement | None]:
        """Each advisor's first placement in ``view`` (None: it would wait)."""
        out: list[Placement | None] = []
        for s in self.schedulers:
            placements = s.decide(view) if view.ready else []
            out.append(placements[0] if placements else None)
        return out
