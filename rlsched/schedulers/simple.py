"""The simple baselines: random, FIFO, shortest-job-first, critical-path-first."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from rlsched.gangs import pick_gang
from rlsched.pool import MEMORY_TOLERANCE_GIB, fits_memory
from rlsched.schedulers.base import GreedyIdleScheduler, Scheduler
from rlsched.schedulers.ready_set import ReadyByJob
from rlsched.schedulers.upward_ranks import RankedReady
from rlsched.view import ClusterView, Placement


class RandomScheduler(Scheduler):
    """A random ready task on a random device that fits, while any fit.

    Unlike the others it may also share a busy device; it is the floor every
    policy must clear.
    """

    name = "random"
    reads_beliefs = False

    def __init__(self) -> None:
        import numpy as np  # here, not with the module: the live daemon starts without it

        self.rng = np.random.default_rng(0)

    def reset(self, seed: int = 0) -> None:
        import numpy as np

        self.rng = np.random.default_rng([seed, 1])

    def _decide(self, view: ClusterView) -> list[Placement]:
        free = [d.memory_free if d.healthy else -1.0 for d in view.devices]
        busy = [d.n_tasks for d in view.devices]
        memory, gpus = view.table.memory, view.table.gpus
        ruled = view.constrained
        import numpy as np

        out: list[Placement] = []
        queue = np.fromiter(view.ready, dtype=np.int64, count=len(view.ready))
        room = max(free, default=-1.0)  # the most memory any device has left
        order = self.rng.permutation(len(queue))  # drawn whether or not anything fits
        # A task that does not fit where the most memory is left draws nothing and
        # is passed over; ``room`` only shrinks within a decision, so the tasks
        # that do not fit it now never will: only the others are visited.
        shuffled = queue[order]
        need = view.table.arrays["memory"][shuffled]
        for task in shuffled[need <= room + MEMORY_TOLERANCE_GIB].tolist():
            if not fits_memory(memory[task], room):
                continue  # no longer fits anywhere: no pass over the devices
            # prefer idle devices, as any sensible random spooler would
            fitting = [d for d in range(len(free)) if fits_memory(memory[task], free[d])
                       and (not ruled or view.may_use(task, d))]
            idle = [d for d in fitting if busy[d] == 0]
            if gpus[task] > 1:  # a gang: random members, idle ones first, on one host
                luck = {d: (busy[d] > 0, float(self.rng.random())) for d in fitting}
                gang = pick_gang(view.pool, gpus[task], fitting, luck.__getitem__)
                if gang is not None:
                    out.append(Placement(task, gang[0], gang[1:]))
                    for d in gang:
                        free[d] -= memory[task]
                        busy[d] += 1
                    room = max(free)
                continue
            pick = idle or fitting
            if not pick:
                continue
            d = pick[int(self.rng.integers(len(pick)))]
            out.append(Placement(task, d))
            free[d] -= memory[task]
            busy[d] += 1
            room = max(free)
        return out


class FifoScheduler(GreedyIdleScheduler):
    """First come, first served onto the first idle GPU with the memory: what
    task-spooler-like GPU queues do today."""

    name = "fifo"
    gang_fair = True  # nothing that came later overtakes a waiting gang
    reads_beliefs = False  # arrival order, the first idle device with the memory

    def choose(self, view: ClusterView, task: int, devices: list[int]) -> int:
        return devices[0]


class SjfScheduler(GreedyIdleScheduler):
    """Shortest remaining job first: tasks of the job with the least
    unfinished work go first, each to the fastest idle device."""

    name = "sjf"

    def __init__(self) -> None:
        self._ready = ReadyByJob()

    def order(self, view: ClusterView) -> Iterable[int]:
        """As ``sorted(view.ready, key=lambda t: job_remaining[job_of[t]])``
        orders them, lazily: the decision stops once the idle devices are
        taken, so the queue behind is never sorted."""
        self._ready.sync(view)
        return chain.from_iterable(self._ready.order(view.job_remaining).runs())


class CriticalPathScheduler(GreedyIdleScheduler):
    """Critical path first: the ready task with the longest chain of work
    still behind it (its upward rank of predicted runtimes at reference speed)
    goes first, to the fastest idle device."""

    name = "cp"

    def __init__(self) -> None:
        self._ready = RankedReady()

    def order(self, view: ClusterView) -> Iterable[int]:
        return self._ready.order(view)
