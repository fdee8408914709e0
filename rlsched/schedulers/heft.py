"""HEFT (Topcuoglu et al., 2002), made dynamic for online arrivals and drift.

Static HEFT ranks tasks by *upward rank* (mean runtime over the devices plus
the longest ranked path to an exit) and, in that order, gives each task the
device with the *earliest finish time*, allowing insertion into idle gaps
left by earlier placements. Runtimes here are heterogeneous: each device has
its own speed per task kind, scaled by the clock ratio telemetry reports.

Dynamic variant: the plan covers every unfinished task of the jobs that have
arrived, starting from what runs now. It is redrawn when the world changes
in a way the plan did not foresee: a job arrives, a device fails or returns,
a device's clock changes (throttling), or memory is taken from outside.
Between redraws each idle device runs its planned tasks in planned order,
and fills a gap with a later ready task only where it ends before the next
planned start, so following the plan never finishes later than the plan.
"""

from __future__ import annotations

from bisect import bisect_right

from rlsched.schedulers.base import Scheduler
from rlsched.schedulers.simple import upward_rank
from rlsched.view import ClusterView, Placement, TaskState

_READY, _BLOCKED = int(TaskState.READY), int(TaskState.BLOCKED)
_UNSTARTED = (int(TaskState.BLOCKED), int(TaskState.READY))


class HeftScheduler(Scheduler):
    """Heterogeneous earliest finish time with insertion, replanned on change."""

    name = "heft"

    def reset(self, seed: int = 0) -> None:
        self._key: tuple | None = None
        self._table = None
        self.plans = 0

    def _decide(self, view: ClusterView) -> list[Placement]:
        key = _world_key(view)
        if key != self._key or view.table is not self._table:
            self._plan(view)
            self._key, self._table = key, view.table
        state, memory = view.task_state, view.table.memory
        out = []
        for dev in view.devices:
            if not dev.healthy or dev.n_tasks:
                continue
            queue = self._queues[dev.index]
            while queue and state[queue[0]] not in _UNSTARTED:
                queue.pop(0)
            if not queue:
                continue
            head = queue[0]
            chosen = None
            if state[head] == _READY:
                chosen = head if memory[head] <= dev.memory_free + 1e-9 else None
            else:
                limit = self._start[head] - view.time
                for t in queue[1:]:
                    if (state[t] == _READY and self._duration[t] <= limit + 1e-9
                            and memory[t] <= dev.memory_free + 1e-9):
                        chosen = t
                        break
            if chosen is not None:
                # the queue is left as it is: a caller may apply only some of
                # these placements, and started tasks drop out lazily above
                out.append(Placement(chosen, dev.index))
        if not out and not view.running and self._stalled(view):
            # the plan waits for a task that cannot start (e.g. memory taken
            # from outside on its device); redraw it from this state
            self._plan(view)
            return self._decide_once_more(view)
        return out

    def _stalled(self, view: ClusterView) -> bool:
        return any(view.fits(t, d.index) for t in view.ready for d in view.devices)

    def _decide_once_more(self, view: ClusterView) -> list[Placement]:
        t = max(view.ready, key=lambda t: self._rank.get(t, 0.0))
        fitting = [d.index for d in view.devices if view.fits(t, d.index)]
        return [Placement(t, min(fitting, key=lambda d: self._cost(view, t, d)))]

    # -------------------------------------------------------------- planning
    def _cost(self, view: ClusterView, t: int, d: int) -> float:
        dev = view.devices[d]
        return view.nominal_runtime(t, d) / (dev.clock_ratio or 1.0)

    def _plan(self, view: ClusterView) -> None:
        self.plans += 1
        tb, now, state = view.table, view.time, view.task_state
        devices = [d.index for d in view.devices if d.healthy]
        first, last = 0, tb.job_start[view.n_arrived]
        live = [t for t in range(first, last) if state[t] != TaskState.DONE]

        cost: dict[int, dict[int, float]] = {}
        mean: list[float] = [0.0] * last
        for t in live:
            if not tb.gpu[t]:
                mean[t] = tb.work[t]
                continue
            fits = {d: self._cost(view, t, d) for d in devices
                    if tb.memory[t] <= view.devices[d].memory_total + 1e-9}
            cost[t] = fits
            mean[t] = sum(fits.values()) / len(fits) if fits else tb.work[t]
        rank_all = upward_rank(mean, [c for c in tb.children[:last]])
        self._rank = {t: rank_all[t] for t in live}

        finish: dict[int, float] = {}
        starts: dict[int, list[float]] = {d: [] for d in devices}
        ends: dict[int, list[float]] = {d: [] for d in devices}
        busy_until: dict[int, float] = {}
        for r in view.running:
            if r.device < 0:
                finish[r.task] = max(now, r.start + tb.work[r.task])
                continue
            end = max(now, r.start + self._cost(view, r.task, r.device))
            finish[r.task] = end
            busy_until[r.device] = max(end, busy_until.get(r.device, now))
        for d, end in busy_until.items():
            if d in starts:  # tasks sharing a device: one busy interval
                _insert(starts[d], ends[d], now, end)

        self._start: dict[int, float] = {}
        self._duration: dict[int, float] = {}
        queues: dict[int, list[tuple[float, int]]] = {d.index: [] for d in view.devices}
        todo = sorted((t for t in live if state[t] in _UNSTARTED),
                      key=lambda t: (-rank_all[t], t))
        for t in todo:
            ready = max((finish.get(p, now) for p in tb.parents[t]), default=now)
            ready = max(ready, now)
            if not tb.gpu[t]:
                finish[t] = ready + tb.work[t]
                continue
            best = None
            for d, c in cost[t].items():
                s = _earliest_gap(starts[d], ends[d], ready, c)
                if best is None or s + c < best[0] - 1e-12:
                    best = (s + c, s, d, c)
            if best is None:  # fits no healthy device now: wait for one to return
                finish[t] = float("inf")
                continue
            end, s, d, c = best
            _insert(starts[d], ends[d], s, end)
            finish[t] = end
            self._start[t] = s
            self._duration[t] = c
            queues[d].append((s, t))
        self._queues = {d: [t for _, t in sorted(q)] for d, q in queues.items()}


def _earliest_gap(starts: list[float], ends: list[float], ready: float, length: float) -> float:
    """Earliest time >= ``ready`` at which a gap of ``length`` opens."""
    i = bisect_right(ends, ready)
    t = ready
    n = len(starts)
    while i < n:
        if starts[i] - t >= length - 1e-12:
            return t
        if ends[i] > t:
            t = ends[i]
        i += 1
    return t


def _insert(starts: list[float], ends: list[float], s: float, e: float) -> None:
    i = bisect_right(starts, s)
    starts.insert(i, s)
    ends.insert(i, e)


def _world_key(view: ClusterView) -> tuple:
    """What, when it changes, makes the plan stale."""
    return (view.n_arrived,
            tuple((d.healthy, round(d.clock_ratio, 2),
                   round(d.memory_used - _ours(view, d.index), 1)) for d in view.devices))


def _ours(view: ClusterView, device: int) -> float:
    memory = view.table.memory
    return sum(memory[r.task] for r in view.running if r.device == device)
