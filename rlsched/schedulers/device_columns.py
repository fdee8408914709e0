"""The per-device numbers a scheduler reads at every decision, kept between
decisions.

On a wide pool, each decision of ``share`` began with passes over every
device (memory free, tasks, clock) and over every running task (seconds
until each device is next free): some 30 µs on 64 GPUs, as much as the rest
of a decision that places nothing, which is half of them there. Between two
decisions most devices do not change, and the simulator says which did: it
keeps a device's telemetry sample (the very object) until something on that
device changes, a task starting or ending there included (see
:attr:`rlsched.view.ClusterView.devices`). So the columns are kept and only
the devices with a new sample are read again. The seconds until free also
read the predictions of what runs, so when those move (``open_knowledge``)
the running tasks of the kinds re-predicted are read again (the view's
``belief_log`` names them). A producer that builds new samples for every
view, and keeps no belief log (the live daemon), gets the full passes, and
every producer the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlsched.schedulers.base import pool_speeds, runtimes
from rlsched.view import ClusterView, DeviceTelemetry, RunningTask

_NOTHING = float("-inf")  # the end of what runs on a device that runs nothing


class DeviceColumns:
    """``free``, ``count``, ``clocks`` and ``until_free`` per device, as
    ``share`` reads them, kept up to date between decisions."""

    __slots__ = ("_devices", "_predicted", "_knowledge", "_free", "_count", "_clocks", "_ends",
                 "_healthy", "_totals", "_beliefs", "_belief_mark", "_empty", "_shape_mark", "_alike")

    def __init__(self) -> None:
        self._devices: tuple[DeviceTelemetry, ...] | None = None
        self._predicted: Sequence[float] | None = None
        self._knowledge = -1
        self._free: list[float] = []
        self._count: list[int] = []
        self._clocks: list[float] = []
        self._ends: list[float] = []  # the latest predicted end of what runs there
        self._healthy: list[bool] = []
        self._totals: list[float] = []  # memory
        #: the view's belief log, and how much of it the ends have followed
        self._beliefs: list[str] | None = None
        self._belief_mark = 0
        self._empty = 0  # devices running nothing
        #: bumped whenever a device's clock ratio, health or memory size changes
        self._shape_mark = 0
        self._alike = (-1, False)  # all_alike's answer, at a shape mark

    def read(self, view: ClusterView) -> tuple[list[float], list[int], list[float], list[float]]:
        """Per device: memory free (-1 on an unhealthy one), tasks on it, its
        clock ratio as :func:`rlsched.schedulers.base.clock_ratios` gives it,
        and seconds until it is next free by what runs there (0: nothing
        does; at least 1 where something does: a task past its prediction
        still holds its device, so it counts as about to end). Lists of the
        caller's own, to change."""
        devices, predicted = view.devices, view.predicted
        old = self._devices
        n = len(devices)
        changed: Sequence[int]
        if old is None or len(old) != n or predicted is not self._predicted:
            # a new episode, a fork, or a view of another producer: read every device
            changed = range(n)
            self._free, self._count = [0.0] * n, [0] * n
            self._clocks, self._ends, self._healthy = [1.0] * n, [_NOTHING] * n, [True] * n
            self._totals = [0.0] * n
            self._predicted, self._knowledge, self._beliefs = predicted, -1, None
            self._empty = n
            self._shape_mark += 1
        else:
            changed = [d for d in range(n) if devices[d] is not old[d]]
        self._devices = devices
        free, count, clocks, healthy = self._free, self._count, self._clocks, self._healthy
        totals = self._totals
        for d in changed:
            dev = devices[d]
            ok, total, ratio = dev.healthy, dev.memory_total, dev.clock_ratio or 1.0
            if ok != healthy[d] or total != totals[d] or ratio != clocks[d]:
                healthy[d], totals[d], clocks[d] = ok, total, ratio
                self._shape_mark += 1
            free[d] = dev.memory_free if ok else -1.0
            tasks = dev.n_tasks
            if count[d] == 0:
                self._empty -= 1
            if tasks == 0:
                self._empty += 1
            count[d] = tasks
        if len(changed) == n:
            self._read_all_ends(view)
        elif view.open_knowledge != self._knowledge:
            log = view.belief_log
            if log is None or log is not self._beliefs:
                self._read_all_ends(view)
            else:
                # only the running tasks of the kinds re-predicted since the
                # last read moved (and those on the devices with new samples)
                moved = set(log[self._belief_mark:view.belief_mark])
                keys = view.table.history_key
                stale = set(changed)
                stale.update([r.device for r in view.running
                              if keys[r.task] in moved and r.device >= 0])
                self._read_ends_on(view, stale)
        elif changed:
            self._read_ends_on(view, set(changed))
        self._knowledge = view.open_knowledge
        self._beliefs, self._belief_mark = view.belief_log, view.belief_mark
        now, nothing = view.time, _NOTHING
        until_free = [0.0 if e == nothing else (e - now if e - now > 1.0 else 1.0)
                      for e in self._ends]
        return list(free), list(count), list(clocks), until_free

    def _read_all_ends(self, view: ClusterView) -> None:
        self._ends = [_NOTHING] * len(view.devices)
        self._read_ends(view, view.running)

    def _read_ends_on(self, view: ClusterView, stale: set[int]) -> None:
        """Read again the ends of the devices ``stale`` (from every running task on them)."""
        if not stale:
            return
        ends = self._ends
        for d in stale:
            ends[d] = _NOTHING
        self._read_ends(view, [r for r in view.running if r.device in stale])

    @property
    def empty(self) -> int:
        """How many devices ran nothing at the last :meth:`read`."""
        return self._empty

    @property
    def shape_mark(self) -> int:
        """Changes whenever a device's clock ratio, health or memory size
        does (and whenever every device is read afresh): what is derived
        from those alone is kept while it holds."""
        return self._shape_mark

    @property
    def clocks(self) -> list[float]:
        """The clock ratios of the last :meth:`read`, to read, not change."""
        return self._clocks

    def all_alike(self) -> bool:
        """Whether, at the last :meth:`read`, every device was healthy, at one
        clock ratio and of one memory size (with one model, a task then runs
        as long on each, and fits each or none)."""
        mark, answer = self._alike
        if mark != self._shape_mark:
            clocks, totals, n = self._clocks, self._totals, len(self._clocks)
            answer = all(self._healthy) and clocks.count(clocks[0]) == n and \
                totals.count(totals[0]) == n
            self._alike = (self._shape_mark, answer)
        return answer

    def _read_ends(self, view: ClusterView, running: Sequence[RunningTask]) -> None:
        """Raise each device's end to that of each of ``running`` on it: its
        start plus its runtime there (:func:`rlsched.schedulers.base.runtimes`'s
        operations, inline)."""
        ends, clocks = self._ends, self._clocks
        if view.table.speeds is None:
            speeds, predicted, kinds = pool_speeds(view.pool), view.predicted, view.table.kind
            for r in running:
                on = r.device
                if on >= 0:
                    t = r.task
                    end = r.start + predicted[t] / speeds[on][kinds[t]] / clocks[on]
                    if end > ends[on]:
                        ends[on] = end
            return
        runtime = runtimes(view, clocks)
        for r in running:
            on = r.device
            if on >= 0:
                end = r.start + runtime(r.task, on)
                if end > ends[on]:
                    ends[on] = end
