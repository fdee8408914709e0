"""HEFT (Topcuoglu et al., 2002), made dynamic for online arrivals and drift.

Static HEFT ranks tasks by *upward rank* (mean runtime over the devices plus
the longest ranked path to an exit) and, in that order, gives each task the
device with the *earliest finish time*, allowing insertion into idle gaps
left by earlier placements. Runtimes here are heterogeneous: each device has
its own speed per task kind, scaled by the clock ratio telemetry reports.

The dynamic variant plans every unfinished task of the jobs that have
arrived, starting from what runs now, and follows that plan, redrawing it
when the world changes (see :mod:`rlsched.schedulers.plan`).

A gang (a task of N GPUs) is planned without insertion, after the last
planned interval of each device: on the N devices, by the rule of
:func:`rlsched.gangs.pick_gang`, that are free soonest (then fastest), from
when the last of them is, for the runtime of its slowest member.
"""

from __future__ import annotations

import math
from bisect import bisect_right

from rlsched.gangs import pick_gang
from rlsched.pool import fits_memory
from rlsched.schedulers.plan import Plan, PlanScheduler, expected_end, planned_cost
from rlsched.schedulers.upward_ranks import rank_tasks
from rlsched.view import ClusterView, TaskState

_UNSTARTED = (int(TaskState.BLOCKED), int(TaskState.READY))


class HeftScheduler(PlanScheduler):
    """Heterogeneous earliest finish time with insertion, replanned on change."""

    name = "heft"

    def reset(self, seed: int = 0) -> None:
        super().reset(seed)
        self._memo = HeftMemo()

    def make_plan(self, view: ClusterView) -> Plan:
        return heft_plan(view, self._memo)


class HeftMemo:
    """What one plan of an episode leaves the next. A plan is drawn at every
    arrival; on a long stream most jobs that ever arrived have finished and
    most tasks' beliefs have not moved since the last plan, so both are kept:

    * the jobs with work left (arrived jobs, less those found finished), so a
      plan reads those jobs' tasks, not every task that ever arrived;
    * each task's cost on each device and its mean, used only while its
      prediction, and the devices' classes (which devices are healthy, each
      one's model, clock and memory), are what they were when it was made.

    A plan is the same with or without it."""

    def __init__(self) -> None:
        self._table: object = None
        self._time = -math.inf
        self._arrived = 0
        self._open: list[int] = []
        self._classes: tuple = ()
        #: task -> (its prediction, {device: cost}, mean cost)
        self._entries: dict[int, tuple[float, dict[int, float], float]] = {}

    def open_jobs(self, view: ClusterView) -> list[int]:
        """The arrived jobs of ``view`` with a task not done, in order
        (everything kept is dropped where the table changed, or where time
        went back: a scheduler asked about a simulator's fork, then about the
        simulator again, as the lookahead does)."""
        tb, state = view.table, view.task_state
        if self._table is not tb or view.time < self._time or view.n_arrived < self._arrived:
            self._table, self._arrived, self._open = tb, 0, []
            self._classes, self._entries = (), {}
        self._time = view.time
        self._open.extend(range(self._arrived, view.n_arrived))
        self._arrived = view.n_arrived
        done = TaskState.DONE
        self._open = [j for j in self._open
                      if any(state[t] != done for t in tb.tasks_of(j))]
        return self._open

    def costs(self, view: ClusterView, classes: tuple, live: int) -> dict[
            int, tuple[float, dict[int, float], float]]:
        """The cost entries that may be read in a plan of ``view`` whose
        device classes are ``classes`` (all dropped where they changed, and
        those of finished tasks once they outnumber the ``live`` tasks)."""
        if self._classes != classes:
            self._classes, self._entries = classes, {}
        elif len(self._entries) > 2 * live + 64:
            state = view.task_state
            self._entries = {t: e for t, e in self._entries.items()
                             if state[t] != TaskState.DONE}
        return self._entries


def expected_finish_of_running(view: ClusterView) -> tuple[dict[int, float], dict[int, float]]:
    """Expected end of each running task, and when each busy device frees.

    A task still running past its predicted end is expected to overrun as
    much again (:func:`rlsched.schedulers.plan.expected_end`)."""
    now = view.time
    finish: dict[int, float] = {}
    busy_until: dict[int, float] = {}
    for r in view.running:
        if r.device < 0:
            finish[r.task] = expected_end(now, r.start, view.predicted[r.task])
            continue
        end = expected_end(now, r.start, planned_cost(view, r.task, r.device))
        finish[r.task] = end
        busy_until[r.device] = max(end, busy_until.get(r.device, now))
    return finish, busy_until


def heft_plan(view: ClusterView, memo: HeftMemo | None = None) -> Plan:
    """The HEFT plan of every unstarted task of the arrived jobs of ``view``
    (``memo``: what the last plan of this episode left, to reuse)."""
    tb, now, state = view.table, view.time, view.task_state
    devices = [d.index for d in view.devices if d.healthy]
    last = tb.job_start[view.n_arrived]
    jobs = memo.open_jobs(view) if memo is not None else range(view.n_arrived)
    done = TaskState.DONE
    live = [t for j in jobs for t in tb.tasks_of(j) if state[t] != done]

    # devices of one model at one clock cost a task alike: its cost is
    # computed once per such class (by its first device), and every device
    # still gets its entry, in device order, so sums and ties are as before
    rep_of = {} if view.constrained else _representatives(view, devices)
    cost, mean = _costs(view, live, last, devices, rep_of, memo)
    # a job's tasks are one run of indices that holds their children: ranked
    # job by job, only the jobs with work left, the numbers are the whole pass's
    rank = [0.0] * last
    for j in jobs:
        rank_tasks(rank, mean, tb.children, tb.tasks_of(j))

    finish, busy_until = expected_finish_of_running(view)
    starts: dict[int, list[float]] = {d: [] for d in devices}
    ends: dict[int, list[float]] = {d: [] for d in devices}
    # at least the widest gap between two intervals planned on each device
    # (it only grows: a gap filled is not taken off), see _earliest_start
    widest: dict[int, float] = {d: -math.inf for d in devices}
    for d, end in busy_until.items():
        if d in starts:  # tasks sharing a device: one busy interval
            _insert(starts[d], ends[d], now, end, widest, d)

    spare = _Spare(rep_of, starts)
    uniform = len(set(rep_of.values())) == 1  # one class of devices: one cost
    plan = Plan(priority={t: rank[t] for t in live})
    todo = sorted((t for t in live if state[t] in _UNSTARTED), key=lambda t: (-rank[t], t))
    for t in todo:
        ready = max((finish.get(p, now) for p in tb.parents[t]), default=now)
        ready = max(ready, now)
        if not tb.gpu[t]:
            finish[t] = ready + view.predicted[t]
            continue
        if tb.gpus[t] > 1:
            _plan_gang(view, plan, t, cost[t], starts, ends, widest, ready, finish)
            for d in plan.gang.get(t, ()):
                spare.taken(d)
            continue
        best = _earliest_finish(cost[t], starts, ends, widest, spare, ready, uniform)
        if best is None:  # fits no healthy device now: wait for one to return
            finish[t] = float("inf")
            continue
        end, s, d, c = best
        spare.taken(d)
        _insert(starts[d], ends[d], s, end, widest, d)
        finish[t] = end
        plan.device[t], plan.start[t], plan.duration[t] = d, s, c
    return plan


class _Spare:
    """The devices with nothing planned yet, per class of
    :func:`_representatives`: of those, only the first in device order needs
    looking at (a later one offers the same start at the same cost, and ties
    go to the earlier)."""

    def __init__(self, rep_of: dict[int, int], starts: dict[int, list[float]]) -> None:
        self._rep_of = rep_of
        self._empty: dict[int, list[int]] = {}
        for d, r in rep_of.items():
            if not starts[d]:
                self._empty.setdefault(r, []).append(d)

    def first(self, d: int) -> bool:
        """Whether empty device ``d`` is the first empty one of its class (or
        classes are not kept: every device is looked at)."""
        if not self._rep_of:
            return True
        return self._empty[self._rep_of[d]][0] == d

    def taken(self, d: int) -> None:
        """Device ``d`` gets its first (or a further) planned task."""
        if self._rep_of:
            empty = self._empty.get(self._rep_of[d])
            if empty and d in empty:
                empty.remove(d)


def _costs(view: ClusterView, live: list[int], last: int, devices: list[int],
           rep_of: dict[int, int], memo: HeftMemo | None
           ) -> tuple[dict[int, dict[int, float]], list[float]]:
    """Each live GPU task's cost on each device it fits (in device order),
    and every task's mean cost (a CPU task's: its prediction)."""
    tb, predicted = view.table, view.predicted
    cost: dict[int, dict[int, float]] = {}
    mean: list[float] = [0.0] * last
    ruled = view.constrained
    reps = list(dict.fromkeys(rep_of.values()))
    kept = memo.costs(view, _classes(view, rep_of), len(live)) \
        if memo is not None and not ruled else None
    for t in live:
        if not tb.gpu[t]:
            mean[t] = predicted[t]
            continue
        entry = kept.get(t) if kept is not None else None
        if entry is not None and entry[0] == predicted[t]:
            cost[t], mean[t] = entry[1], entry[2]
            continue
        if ruled:
            fits = {d: planned_cost(view, t, d) for d in devices
                    if fits_memory(tb.memory[t], view.devices[d].memory_total)
                    and view.may_use(t, d)}
        else:
            need = tb.memory[t]
            by_rep = {r: planned_cost(view, t, r) for r in reps
                      if fits_memory(need, view.devices[r].memory_total)}
            fits = {d: by_rep[r] for d, r in rep_of.items() if r in by_rep}
        cost[t] = fits
        mean[t] = sum(fits.values()) / len(fits) if fits else predicted[t]
        if kept is not None:
            kept[t] = (predicted[t], fits, mean[t])
    return cost, mean


def _classes(view: ClusterView, rep_of: dict[int, int]) -> tuple:
    """What a task's costs on the devices rest on, besides its prediction:
    the healthy devices, their classes, and each class's model, clock and
    memory."""
    devices = view.devices
    return tuple(rep_of.items()), tuple(
        (view.pool.devices[r].model, devices[r].clock_ratio, devices[r].memory_total)
        for r in dict.fromkeys(rep_of.values()))


def _representatives(view: ClusterView, devices: list[int]) -> dict[int, int]:
    """Each device's first device (in ``devices``' order) of its class: one
    model, one clock, one memory size."""
    first: dict[tuple, int] = {}
    out: dict[int, int] = {}
    for d in devices:
        dev = view.devices[d]
        key = (view.pool.devices[d].model, dev.clock_ratio, dev.memory_total)
        out[d] = first.setdefault(key, d)
    return out


def _plan_gang(view: ClusterView, plan: Plan, t: int, cost: dict[int, float],
               starts: dict[int, list[float]], ends: dict[int, list[float]],
               widest: dict[int, float], ready: float, finish: dict[int, float]) -> None:
    """Plan gang ``t`` after the last interval of its devices (see module)."""
    free = {d: max(ready, ends[d][-1] if ends[d] else ready) for d in cost}
    gang = pick_gang(view.pool, view.table.gpus[t], list(cost), lambda d: (free[d], cost[d]))
    if gang is None:  # not enough healthy devices now: wait for some to return
        finish[t] = float("inf")
        return
    s = max(free[d] for d in gang)
    c = max(cost[d] for d in gang)
    for d in gang:
        _insert(starts[d], ends[d], s, s + c, widest, d)
    finish[t] = s + c
    plan.device[t], plan.start[t], plan.duration[t] = gang[0], s, c
    plan.gang[t] = gang


def _earliest_finish(cost: dict[int, float], starts: dict[int, list[float]],
                     ends: dict[int, list[float]], widest: dict[int, float], spare: _Spare,
                     ready: float, uniform: bool = False
                     ) -> tuple[float, float, int, float] | None:
    """``(end, start, device, cost)`` of the device, of those in ``cost``,
    where a task ready at ``ready`` finishes first with insertion (ties, to
    1e-12, to the earlier device); None where ``cost`` is empty.
    ``uniform``: every device costs the task alike."""
    best = None
    bound = 0.0  # best[0] - 1e-12: what a device must finish under to replace it
    for d, c in cost.items():
        # it starts no sooner than ready there, so finishes no sooner than
        # ready + c: where that cannot replace the best, skip the gap search
        # (floating-point addition is monotone, so the skip is exact)
        if best is not None and ready + c >= bound:
            continue
        st = starts[d]
        if not st:  # nothing planned there: it starts at once
            if not spare.first(d):
                continue  # a twin of an earlier empty device: the same start and cost
            s = ready
        elif widest[d] == math.inf:  # intervals out of order: only the search knows
            s = _earliest_gap(st, ends[d], ready, c)
        else:
            # _earliest_gap, without the search where its answer is known:
            # nothing planned ends after ready (it is ready), or no gap between
            # intervals is as wide as c and ready is not before the first
            # interval (it is the end of the last: the search would find every
            # gap, or its part after ready, too narrow, as x - t only shrinks
            # as t grows, in floating point too)
            last = ends[d][-1]
            if last <= ready:
                s = ready
            elif st[0] <= ready and widest[d] < c - 1e-12 and c > 2e-12:
                s = last
            else:
                s = _earliest_gap(st, ends[d], ready, c)
        if best is None or s + c < bound:
            best = (s + c, s, d, c)
            bound = best[0] - 1e-12
            if uniform and s == ready:
                break  # the least finish there is: no later device replaces it
    return best


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


def _insert(starts: list[float], ends: list[float], s: float, e: float,
            widest: dict[int, float], d: int) -> None:
    """Plan ``[s, e)`` on device ``d``, whose intervals are ``starts`` and
    ``ends``; ``widest[d]`` takes in the gaps it leaves on either side, and
    becomes inf for good where the intervals stop being in order, each
    ending before the next starts (a task of no length placed at another's
    start goes after it): the shortcuts of :func:`_earliest_finish` rest on
    that order, the search does not."""
    i = bisect_right(starts, s)
    gap = widest[d]
    if i:
        gap = max(gap, s - ends[i - 1])
        if s < ends[i - 1]:
            gap = math.inf
    if i < len(starts):
        gap = max(gap, starts[i] - e)
        if starts[i] < e:
            gap = math.inf
    if e < s:
        gap = math.inf
    widest[d] = gap
    starts.insert(i, s)
    ends.insert(i, e)
