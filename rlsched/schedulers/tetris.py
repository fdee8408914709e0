"""Tetris (Grandl et al., SIGCOMM 2014): multi-resource packing plus remaining work.

For every (ready task, idle device) pair the score is the *alignment* of the
task's demand vector with the device's free vector, both normalised by the
device's capacity (here: memory and the device's compute), plus how well the
device's speed suits the task's kind, minus a shortest-remaining-work term
that keeps small jobs from starving. The best pair is placed, free resources
are updated, and the search repeats while pairs remain.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import chain, islice

from rlsched.gangs import pick_gang
from rlsched.pool import fits_memory
from rlsched.schedulers.base import (
    Scheduler,
    class_key,
    device_classes,
    expected_runtime,
    kept_idle_classes,
    runtimes,
)
from rlsched.schedulers.ready_set import ReadyByJob
from rlsched.view import ClusterView, Placement

#: weight of the remaining-work term against alignment (Tetris' epsilon)
SRPT_WEIGHT = 0.5
#: tasks considered per decision, those of the jobs with least work left
CANDIDATES = 64


class TetrisScheduler(Scheduler):
    """Packing by resource alignment, with a remaining-work tie to SRPT."""

    name = "tetris"
    idle_only = True

    def __init__(self) -> None:
        self._ready = ReadyByJob()

    def _decide(self, view: ClusterView) -> list[Placement]:
        # on a wide pool, the idle devices' classes kept between decisions
        # (as GreedyIdleScheduler keeps them), each class offered by its
        # first member not taken
        wide = kept_idle_classes(self, view)
        if wide is None:
            return self._decide_each(view)
        kept, n_idle, classes = wide
        if not n_idle:
            return []
        ready, worst = self._candidates(view)
        runtime = runtimes(view)  # expected_runtime's numbers, looked up faster
        devices = view.devices
        taken = dict.fromkeys(classes, 0)
        out = []
        while n_idle and ready:
            firsts = sorted(m[n] for m, n in zip(classes.values(), taken.values()) if n < len(m))
            best = self._best(view, ready, worst, runtime, firsts,
                              {d: devices[d].memory_free for d in firsts})
            if best is None:
                break
            _, t, d, _ = best
            out.append(Placement(t, d))
            taken[kept.key_of(d)] += 1
            n_idle -= 1
            ready.remove(t)
        return out

    def _candidates(self, view: ClusterView) -> tuple[list[int], float]:
        """The first CANDIDATES of ``sorted(view.ready, key=job_remaining[job])``
        (read lazily), and the most work left of any of their jobs."""
        remaining, job_of = view.job_remaining, view.table.job_of
        self._ready.sync(view)
        ready = list(islice(chain.from_iterable(self._ready.groups(remaining)), CANDIDATES))
        return ready, max(remaining[job_of[t]] for t in ready) or 1.0

    def _best(self, view: ClusterView, ready: list[int], worst: float,
              runtime: Callable[[int, int], float], firsts: list[int], idle: dict[int, float]
              ) -> tuple[float, int, int, tuple[int, ...]] | None:
        """The best-scoring (task, device) pair of ``ready`` on ``firsts`` (a
        gang on idle devices, ``idle``: each one's free memory) as ``(score,
        task, device, members)``; None if no task fits."""
        tb, remaining, ruled = view.table, view.job_remaining, view.constrained
        gangs = tb.has_gangs
        best: tuple[float, int, int, tuple[int, ...]] | None = None
        for t in ready:
            srpt = SRPT_WEIGHT * remaining[tb.job_of[t]] / worst
            times = [runtime(t, d) for d in firsts]
            fastest = min(times) or 1.0
            gang: tuple[int, ...] | None = None
            if gangs and tb.gpus[t] > 1:  # a gang is scored on its slowest member
                fitting = [d for d, free in idle.items() if fits_memory(tb.memory[t], free)
                           and (not ruled or view.may_use(t, d))]
                gang = pick_gang(view.pool, tb.gpus[t], fitting,
                                 partial(expected_runtime, view, t))
                if gang is None:
                    continue
                slowest = max(gang, key=partial(expected_runtime, view, t))
                candidates = [(slowest, runtime(t, slowest))]
            else:
                candidates = [(d, rt) for d, rt in zip(firsts, times)
                              if fits_memory(tb.memory[t], idle[d])
                              and (not ruled or view.may_use(t, d))]
            for d, rt in candidates:
                free = idle[d]
                total = view.devices[d].memory_total
                align = 1.0 + (tb.memory[t] / total) * (free / total)
                speed_fit = fastest / (rt or 1.0)
                score = align + speed_fit - srpt
                if best is None or score > best[0] + 1e-12:
                    best = (score, t, d, gang or (d,))
        return best

    def _decide_each(self, view: ClusterView) -> list[Placement]:
        """:meth:`_decide` where placement rules or gangs make devices differ
        task by task, or on a narrow pool: the idle devices are read afresh."""
        idle = {d.index: d.memory_free for d in view.devices if d.healthy and d.n_tasks == 0}
        if not idle:
            return []
        ready, worst = self._candidates(view)
        runtime = runtimes(view)  # expected_runtime's numbers, looked up faster
        ruled = view.constrained
        out = []
        # idle devices of one model, free memory, size and clock score alike for
        # every task: each class is scored once, by its first member in index
        # order, which is the one the scan of every device would have picked
        # (a later equal score never displaces an earlier one); placement rules
        # name devices, so with any, every device is scored
        classes = {} if ruled else device_classes(view, idle, idle)
        while idle and ready:
            firsts = sorted(m[0] for m in classes.values() if m) if classes else list(idle)
            best = self._best(view, ready, worst, runtime, firsts, idle)
            if best is None:
                break
            _, t, _, members = best
            out.append(Placement(t, members[0], members[1:]))
            for d in members:
                if classes:
                    classes[class_key(view, d, idle[d])].remove(d)
                del idle[d]
            ready.remove(t)
        return out
