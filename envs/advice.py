"""Advice: what the classic heuristics would do now, as observation features.

A learned scheduler should never have to rediscover what a good heuristic
already knows. So the observation carries, for each of a few advisors, the
placement it would make next in this view (its task, its device, or that it
would wait). The policy learns when to follow which advisor, and where to
deviate: ``share`` and ``tetris`` are the strongest here on average JCT with
jobs arriving online (``sjf`` on pools of identical GPUs, where placing by
speed buys nothing and ``share``'s sharing costs), ``cp`` and ``heft`` on
the makespan of a batch of one DAG. All are cheap (heft plans once per
change of the world and then follows its plan), and all are deterministic,
so a policy sees the same advice in training, evaluation and live serving.
"""

from __future__ import annotations

from rlsched.schedulers import Scheduler, make_scheduler
from rlsched.view import ClusterView, Placement

#: the advisors, in the order of their feature columns
ADVISORS = ("share", "heft", "cp", "tetris", "sjf")


class Advisors:
    """One instance of each advisor, reset with the episode.

    A heuristic decides a batch of placements at once; the environment
    places one task per step. Asking the heuristic again after each single
    placement is not the same policy (share, for one, would then see the
    task it just placed as running, and share differently). So each advisor
    keeps the rest of its batch: while the time has not moved and its last
    advice was taken, its next advice is the next placement of that batch.
    Following an advisor step by step is then exactly that advisor.
    """

    def __init__(self, names: tuple[str, ...] = ADVISORS) -> None:
        self.names = names
        self.schedulers: list[Scheduler] = [make_scheduler(n) for n in names]
        self._rest: list[tuple[float, list[Placement]]] = [(-1.0, [])] * len(names)

    def reset(self, seed: int = 0) -> None:
        for s in self.schedulers:
            s.reset(seed)
        self._rest = [(-1.0, [])] * len(self.names)

    def advise(self, view: ClusterView) -> list[Placement | None]:
        """Each advisor's next placement in ``view`` (None: it would wait)."""
        out: list[Placement | None] = []
        running = {(r.task, r.device) for r in view.running if r.start == view.time}
        for k, s in enumerate(self.schedulers):
            time, rest = self._rest[k]
            if time == view.time and len(rest) > 1 and (rest[0].task, rest[0].device) in running:
                rest = rest[1:]  # its last advice was taken: the batch goes on
            else:
                rest = list(s.decide(view)) if view.ready else []
            self._rest[k] = (view.time, rest)
            out.append(rest[0] if rest else None)
        return out
