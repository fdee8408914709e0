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

import math
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from itertools import chain

from rlsched.schedulers.base import GreedyIdleScheduler
from rlsched.schedulers.ready_set import ReadyByJob
from rlsched.view import ClusterView


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
        #: its job, so no two tie), and the jobs that ran at the last decision
        self._queue: list[tuple[int, float, int]] = []
        self._queued: dict[int, tuple[int, float, int]] = {}
        self._ran: set[int] = set()

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
        ends, so only the jobs that run now or ran when the order was last
        read, and those whose ready tasks changed since, are looked at again."""
        ready, attained = self._ready, view.job_attained
        ready.sync(view)
        job_of = view.table.job_of
        running = {job_of[r.task] for r in view.running}
        if view.ready_log is None or view.ready_log is not self._log or ready.touched is None:
            self._keys, self._until, self._log = {}, {}, view.ready_log
            self._queue, self._queued = [], {}
            self._requeue(view, ready.job_ids(), attained)
        else:
            self._requeue(view, ready.touched | running | self._ran, attained)
        self._ran = running
        return chain.from_iterable(ready.tasks(key[2], int) for key in self._queue)

    def _requeue(self, view: ClusterView, jobs: Iterable[int], attained: Sequence[float]) -> None:
        """Key ``jobs`` afresh where one is new or past its queue's bound,
        and put each with a ready task in its place in the queue (out of it
        if it has none)."""
        keys, until, bounds, arrival = self._keys, self._until, self.bounds, view.table.jobs
        queue, queued, has_ready = self._queue, self._queued, self._ready.job_ids()
        for j in jobs:
            old = queued.get(j)
            if j not in has_ready:
                if old is not None:
                    del queue[bisect_left(queue, old)]
                    del queued[j]
                continue
            if attained[j] >= until.get(j, -1.0):  # a new job, or one past its queue's bound
                k = self.queue(attained[j])
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

    def choose(self, view: ClusterView, task: int, devices: list[int]) -> int:
        table = view.table
        return max(devices, key=lambda d: (table.speed(task, view.pool.devices[d].model)
                                           * (view.devices[d].clock_ratio or 1.0), -d))
