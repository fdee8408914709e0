"""EASY backfilling (Lifka 1995; Mu'alem and Feitelson 2001): FIFO that lets
small tasks use the devices a waiting gang will need, but only where they do
not delay it.

A strict queue leaves devices idle while a gang (a task of several GPUs)
waits for enough of them to free: head-of-line blocking. EASY's remedy is
one *reservation*: the first gang of the queue that cannot start now is
promised the devices where it can start soonest (by
:func:`rlsched.gangs.pick_gang`, ranked by when each is predicted to free),
at the *shadow time*, when the last of them does. A task behind it may start
now on an idle device outside the reservation, or on one inside it if it is
predicted to end by the shadow time. Predictions come from the view, as
every scheduler's do; a task that overruns its prediction delays the gang,
as in every backfilling scheduler, but later tasks are checked against the
shadow time drawn anew at each decision.

:func:`reserve` and :func:`free_in` are shared with ``share``, which keeps a
reservation for its oldest waiting gang the same way.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

from rlsched.gangs import pick_gang
from rlsched.pool import fits_memory
from rlsched.schedulers.base import Scheduler, expected_runtime
from rlsched.schedulers.simple import FifoScheduler
from rlsched.view import ClusterView, Placement


class Reservation(NamedTuple):
    """Devices promised to gang ``task``, free for it in ``shadow`` seconds."""

    task: int
    devices: frozenset[int]
    shadow: float

    def allows(self, view: ClusterView, task: int, device: int) -> bool:
        """Whether ``task`` may start on ``device`` now without delaying the gang."""
        return device not in self.devices or \
            expected_runtime(view, task, device) <= self.shadow


def free_in(view: ClusterView) -> list[float]:
    """Seconds until each device is predicted free of the tasks it runs (0:
    idle; infinite: down). A task past its prediction counts as about to end."""
    out = [0.0] * len(view.devices)
    for r in view.running:
        if r.device >= 0:
            left = r.start + expected_runtime(view, r.task, r.device) - view.time
            out[r.device] = max(out[r.device], left, 1.0)
    for dev in view.devices:
        if not dev.healthy:
            out[dev.index] = float("inf")
    return out


def reserve(view: ClusterView, task: int, until: list[float]) -> Reservation | None:
    """The reservation of gang ``task``: the devices that may ever hold it
    (memory, placement rules) where it can start soonest, given when each
    frees (``until``, see :func:`free_in`); None if it fits nowhere now."""
    memory = view.table.memory[task]
    candidates = [dev.index for dev in view.devices
                  if dev.healthy and fits_memory(memory, dev.memory_total)
                  and view.may_use(task, dev.index)]
    gang = pick_gang(view.pool, view.table.gpus[task], candidates,
                     lambda d: (until[d], expected_runtime(view, task, d)))
    if gang is None:
        return None
    return Reservation(task, frozenset(gang), max(until[d] for d in gang))


class BackfillScheduler(Scheduler):
    """FIFO with EASY backfilling around the first gang that cannot start."""

    name = "backfill"
    idle_only = True
    gang_fair = True
    reads_beliefs = False  # without gangs it is fifo; its reservations are for gangs

    def __init__(self) -> None:
        self._fifo = FifoScheduler()

    def _decide(self, view: ClusterView) -> list[Placement]:
        if not view.table.has_gangs:
            # no gang, no reservation: each task in turn on the first idle
            # device that takes it, which is fifo's decision (and fifo keeps
            # the idle devices between decisions on a wide pool)
            return self._fifo.decide(view)
        idle = [d.index for d in view.devices if d.healthy and d.n_tasks == 0]
        if not idle:
            return []
        free = {d: view.devices[d].memory_free for d in idle}
        tb = view.table
        memory, gpus = tb.memory, tb.gpus
        gangs = tb.has_gangs
        until = free_in(view) if gangs else []
        reservation: Reservation | None = None
        out: list[Placement] = []
        for t in view.ready:
            fitting = [d for d in idle if fits_memory(memory[t], free[d]) and view.may_use(t, d)]
            if reservation is not None:
                fitting = [d for d in fitting if reservation.allows(view, t, d)]
            if gangs and gpus[t] > 1:
                gang = pick_gang(view.pool, gpus[t], fitting,
                                 partial(expected_runtime, view, t))
                if gang is None:
                    if reservation is None:
                        reservation = reserve(view, t, until)
                    continue
                members: tuple[int, ...] = gang
            elif fitting:
                members = (fitting[0],)
            else:
                continue
            out.append(Placement(t, members[0], members[1:]))
            for d in members:
                idle.remove(d)
                if gangs:
                    until[d] = max(expected_runtime(view, t, d), 1e-9)
            if not idle:
                break
        return out
