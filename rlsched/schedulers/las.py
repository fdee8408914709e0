"""Discretised least attained service: scheduling without knowing runtimes.

Tiresias (Gu et al., NSDI 2019) schedules deep-learning jobs whose durations
are unknown. Its *two-dimensional* attained service is a job's GPUs times the
time it has run: a job that has received little is likely short, since job
sizes are heavy-tailed, so it goes first (least attained service, LAS).
Exact LAS reorders on every tick and starves big jobs behind a stream of
small ones; Tiresias discretises it into a few queues by attained-service
thresholds, FIFO (by arrival) within a queue, so jobs only change order when
they cross a threshold.

Adapted here to non-preemptive DAG tasks on a shared pool:

* *No preemption.* Tiresias moves a job down by preempting it when it
  crosses a threshold; a task here runs to its end. The queue decides only
  which ready task starts next: the one whose job is in the lowest queue,
  then the job that arrived first, then the lowest task index.
* *Attained service* is :attr:`ClusterView.job_attained`: the device-seconds
  a job's attempts have had, ended or running (a DAG job's tasks run one GPU
  each, so the GPU dimension is the number of its tasks at once).
* *Thresholds* grow geometrically: queue 0 below ``base`` device-seconds,
  queue ``k`` below ``base * growth**k``, the last one without a bound.
* *Devices.* A task goes to the idle device fastest for its kind at its
  current clock, one task per device, as Tiresias gives jobs whole GPUs.

It reads no runtime: neither estimates nor predictions.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from itertools import chain

from rlsched.schedulers.base import GreedyIdleScheduler
from rlsched.schedulers.ready_set import ReadyByJob
from rlsched.view import AttainedService, ClusterView

#: how early, relative to the clock, a job's crossing time is taken to have
#: come: the time is worked out in floats, and a job looked at before it
#: crosses is only looked at again
_EARLY = 1e-7


class LasScheduler(GreedyIdleScheduler):
    """Tiresias' discretised 2D-LAS, non-preemptive, over DAG tasks.

    :param base: upper bound of the first queue, device-seconds
    :param growth: each queue's bound over the one before
    :param queues: number of queues (the last is unbounded)
    """

    name = "las"
    #: a gang's job waits in its queue by arrival, and holds the devices it
    #: could take (see :class:`GreedyIdleScheduler`): later 1-GPU jobs of its
    #: queue do not overtake it
    gang_fair = True

    def __init__(self, base: float = 600.0, growth: float = 10.0, queues: int = 4) -> None:
        if base <= 0 or growth <= 1 or queues < 1:
            raise ValueError("las needs base > 0, growth > 1 and at least one queue")
        self.bounds = tuple(base * growth ** k for k in range(queues - 1))
        self._ready = ReadyByJob()
        #: each job's key and the attained service at which its queue ends,
        #: kept while the view's log is one episode's (attained service only
        #: grows there, so a job below its bound is in the same queue)
        self._keys: dict[int, tuple[int, float, int]] = {}
        self._until: dict[int, float] = {}
        self._log: list[int] | None = None
        #: the keys of the jobs with a ready task, sorted (each key ends with
        #: its job, so no two tie)
        self._queue: list[tuple[int, float, int]] = []
        self._queued: dict[int, tuple[int, float, int]] = {}
        #: for each queued job that runs, the earliest time it can reach its
        #: queue's bound (its service grows at most as fast as the devices it
        #: holds when last looked at, until one of its tasks starts, which
        #: the ready log shows), as a heap of (time, job) with the time kept
        #: per job
        self._crossing: list[tuple[float, int]] = []
        self._crosses_at: dict[int, float] = {}

    def queue(self, attained: float) -> int:
        """The queue of a job that has received ``attained`` device-seconds."""
        for k, bound in enumerate(self.bounds):
            if attained < bound:
                return k
        return len(self.bounds)

    def order(self, view: ClusterView) -> Iterable[int]:
        """As ``sorted(view.ready, key=lambda t: (queue(job_attained[job]),
        arrival[job], t))`` orders them, lazily: the decision stops once the
        idle devices are taken, so the queue behind is never read.

        The jobs stay sorted between decisions of one episode. A job's
        attained service moves only while it runs, or when an attempt of it
        ends, so only the jobs whose ready tasks changed since the last
        decision, and the running ones whose earliest time to cross their
        queue's bound has come, are looked at again. That needs the view's
        logs and one job's service read alone (:meth:`AttainedService.of`,
        as the simulator gives it); a view without them (the live daemon's)
        is sorted afresh."""
        ready, attained = self._ready, view.job_attained
        ready.sync(view)
        if view.ready_log is None or view.ready_log is not self._log or \
                ready.touched is None or _per_job(attained) is None:
            # a new episode, or a producer that keeps no logs
            self._keys, self._until, self._log = {}, {}, view.ready_log
            self._queue, self._queued = [], {}
            self._crossing, self._crosses_at = [], {}
            self._requeue(view, ready.job_ids(), attained)
        else:
            self._requeue(view, ready.touched | self._due(view.time), attained)
        return chain.from_iterable(ready.tasks(key[2], int) for key in self._queue)

    def _due(self, now: float) -> set[int]:
        """The jobs whose earliest crossing time has come (a little early:
        a job looked at too soon is only looked at again)."""
        heap, at, due = self._crossing, self._crosses_at, set()
        while heap and heap[0][0] <= now + _EARLY * (1.0 + abs(now)):
            time, job = heapq.heappop(heap)
            if at.get(job) == time:
                del at[job]
                due.add(job)
        return due

    def _requeue(self, view: ClusterView, jobs: Iterable[int], attained: Sequence[float]) -> None:
        """Key ``jobs`` afresh where one is new or past its queue's bound,
        and put each with a ready task in its place in the queue (out of it
        if it has none); where one job's service can be read alone, note
        when each that runs can next reach its bound."""
        keys, until, bounds, arrival = self._keys, self._until, self.bounds, view.table.jobs
        queue, queued, has_ready = self._queue, self._queued, self._ready.job_ids()
        service = _per_job(attained)  # (None: a view sorted afresh, no crossing is kept)
        for j in jobs:
            old = queued.get(j)
            if j not in has_ready:
                if old is not None:
                    del queue[bisect_left(queue, old)]
                    del queued[j]
                self._crosses_at.pop(j, None)
                continue
            a = attained[j]
            if a >= until.get(j, -1.0):  # a new job, or one past its queue's bound
                k = self.queue(a)
                # a job's tasks are one run of indices, in job order: the job's
                # own index orders ties as t does
                keys[j] = (k, arrival[j].arrival, j)
                until[j] = bounds[k] if k < len(bounds) else math.inf
            key = keys[j]
            if key != old:
                if old is not None:
                    del queue[bisect_left(queue, old)]
                insort(queue, key)
                queued[j] = key
            if service is not None:
                self._note_crossing(j, a, until[j], service.holding(j), view.time)

    def _note_crossing(self, job: int, attained: float, bound: float, held: int,
                       now: float) -> None:
        """Keep when ``job``, holding ``held`` devices, can first reach
        ``bound`` (never, while it holds none or its queue is the last)."""
        if held and bound != math.inf:
            time = now + (bound - attained) / held
            self._crosses_at[job] = time
            heapq.heappush(self._crossing, (time, job))
        else:
            self._crosses_at.pop(job, None)

    def choose(self, view: ClusterView, task: int, devices: list[int]) -> int:
        table = view.table
        return max(devices, key=lambda d: (table.speed(task, view.pool.devices[d].model)
                                           * (view.devices[d].clock_ratio or 1.0), -d))


def _per_job(attained: Sequence[float]) -> AttainedService | None:
    """``attained`` where one job's service can be read alone, else None."""
    return attained if isinstance(attained, AttainedService) and attained.per_job else None
