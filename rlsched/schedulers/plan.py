"""Schedulers that plan ahead and then follow their plan.

A *plan* gives every unstarted task of the arrived jobs a device and a start
time. Following it, each idle device runs its planned tasks in planned order,
and fills a gap with a later ready task only where that task ends before the
next planned start; so on exact runtimes execution never finishes later than
the plan. A gang (a task of several GPUs) is planned on all its devices and
starts when every one of them is free for it. The plan is redrawn when the world changes in a way it did not
foresee: a job arrives, a device fails or returns, a device's clock changes
(throttling), or memory is taken from outside.

A plan drawn on estimates is wrong as soon as one is. Once a task has ended
off the runtime the plan gave it (earlier, or later, by more than
:data:`OFF_PLAN` of it), a device the plan leaves idle takes the most urgent
ready task that would finish there sooner than where the plan has it (a
*repair*): a device freed early does not sit idle until its next planned
start while ready tasks wait for the devices they were planned on, nor does
work wait for a device whose task runs late. A repair, not a new plan: on the
default estimates nearly every task ends off its plan, and redrawing the plan
at each end made ``bench sim``'s heft episode 8 times slower (780 decisions/s
against 6,500).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import compress
from operator import is_not

from rlsched.gangs import pick_gang
from rlsched.pool import fits_memory
from rlsched.schedulers.base import Scheduler
from rlsched.table import WorkloadTable
from rlsched.view import ClusterView, DeviceTelemetry, Placement, RunningTask, TaskState

_READY = int(TaskState.READY)
_DONE = int(TaskState.DONE)
#: a task ending this far from its planned runtime (a fraction of it) makes the plan stale
OFF_PLAN = 0.05
_UNSTARTED = (int(TaskState.BLOCKED), int(TaskState.READY))


@dataclass
class Plan:
    """Where and when each planned task starts.

    :param device: planned device of each task
    :param start: planned start time of each task
    :param duration: planned runtime of each task
    :param priority: urgency of each task, for the stall fallback (higher first)
    :param gang: every planned device of each gang, ``device`` first
    """

    device: dict[int, int] = field(default_factory=dict)
    start: dict[int, float] = field(default_factory=dict)
    duration: dict[int, float] = field(default_factory=dict)
    priority: dict[int, float] = field(default_factory=dict)
    gang: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def queues(self, n_devices: int) -> list[list[int]]:
        """Each device's planned tasks in order of planned start (a gang in
        the queue of each of its devices)."""
        out: list[list[tuple[float, int]]] = [[] for _ in range(n_devices)]
        for t, d in self.device.items():
            for m in self.gang.get(t, (d,)):
                out[m].append((self.start[t], t))
        return [[t for _, t in sorted(q)] for q in out]


class PlanScheduler(Scheduler):
    """Draw a plan with :meth:`make_plan`, follow it, redraw it on change."""

    costly = True

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, seed: int = 0) -> None:
        self.seed = seed
        self._key: tuple | None = None
        self._world = WorldKey()
        self._table: WorkloadTable | None = None
        self.plans = 0
        #: the runtime the latest plan gave each task running or planned then
        self._runtime: dict[int, float] = {}
        #: the running tasks of the last decision, and when each started
        self._running: dict[int, float] = {}
        #: tasks seen running past their planned runtime
        self._late: set[int] = set()
        #: whether a task ended (or ran on) off the plan since it was drawn
        self._stale = False

    @abstractmethod
    def make_plan(self, view: ClusterView) -> Plan:
        """A plan for every unstarted task of the arrived jobs of ``view``."""

    def _replan(self, view: ClusterView) -> None:
        self.plans += 1
        self.plan = self.make_plan(view)
        self._queues = self.plan.queues(len(view.devices))
        self._key, self._table = self._world(view), view.table
        self._stale = False
        runtime = dict(self.plan.duration)
        for r in view.running:  # a gang runs at its slowest member's pace
            if r.device >= 0:
                runtime[r.task] = max(runtime.get(r.task, 0.0), planned_cost(view, r.task, r.device))
        self._runtime = runtime

    def _off_plan(self, view: ClusterView) -> bool:
        """Whether a task ended since the last decision clearly before the
        plan expected it to, or now runs clearly past it (once per task)."""
        now, state, runtime = view.time, view.task_state, self._runtime
        running = {r.task: r.start for r in view.running if r.device >= 0}
        if view.table is not self._table:  # other indices (the daemon's jobs changed)
            self._running, self._late = running, set()
            return False
        off = False
        for t, start in self._running.items():
            if t not in running and state[t] == _DONE and t in runtime:
                off |= start + runtime[t] - now > OFF_PLAN * runtime[t] + 1e-9
        for t, start in running.items():
            if t in runtime and t not in self._late \
                    and now - start - runtime[t] > OFF_PLAN * runtime[t] + 1e-9:
                self._late.add(t)
                off = True
        self._running = running
        return off

    def _decide(self, view: ClusterView) -> list[Placement]:
        self._stale |= self._off_plan(view)
        if view.table is not self._table or self._world(view) != self._key:
            self._replan(view)
        out = self._follow(view)
        if self._stale:
            out += self._repair(view, out)
        if not out and not view.running:
            return self._unstick(view)
        return out

    def _repair(self, view: ClusterView, out: list[Placement]) -> list[Placement]:
        """Once reality has left the plan behind (:meth:`_off_plan`): give
        each healthy device the plan leaves idle the most urgent ready task
        of one GPU that fits it and would finish there sooner than where the
        plan has it, counting the planned device's running work as it now
        looks (a late task expected to overrun as much again). A local
        repair, not a new plan: redrawing at every off-estimate end would
        cost a plan per decision."""
        taken = {d for p in out for d in p.devices}
        idle = [d.index for d in view.devices
                if d.healthy and not d.n_tasks and d.index not in taken]
        if not idle:
            return []
        plan, now = self.plan, view.time
        # when each planned device frees, read only for the devices a move
        # is weighed against (a few per decision, of up to hundreds busy)
        on_device: dict[int, list[RunningTask]] | None = None
        free_at: dict[int, float] = {}

        def frees(d: int) -> float:
            nonlocal on_device
            if d not in free_at:
                if on_device is None:
                    on_device = {}
                    for r in view.running:
                        if r.device >= 0:
                            on_device.setdefault(r.device, []).append(r)
                free_at[d] = max([now] + [expected_end(now, r.start, planned_cost(view, r.task, d))
                                          for r in on_device.get(d, ())])
            return free_at[d]

        placed = {p.task for p in out}
        waiting = sorted((t for t in view.ready if t not in placed and t in plan.device
                          and view.gpus(t) == 1),
                         key=lambda t: (-plan.priority.get(t, 0.0), t))
        moves = []
        for d in idle:
            for t in waiting:
                if t in placed or not view.fits(t, d):
                    continue
                p = plan.device[t]
                planned_end = max(plan.start[t], frees(p), now) + plan.duration[t]
                if now + planned_cost(view, t, d) < planned_end - 1e-9:
                    moves.append(Placement(t, d))
                    placed.add(t)
                    break
        return moves

    def _follow(self, view: ClusterView) -> list[Placement]:
        """The placements the plan makes now (see the module)."""
        state, memory = view.task_state, view.table.memory
        gangs = self.plan.gang
        out = []
        taken: set[int] = set()  # devices given a task in this decision
        for dev in view.devices:
            if not dev.healthy or dev.n_tasks or dev.index in taken:
                continue
            queue = self._queues[dev.index]
            while queue and state[queue[0]] not in _UNSTARTED:
                queue.pop(0)
            if not queue:
                continue
            head = queue[0]
            chosen = None
            members = gangs.get(head)
            if members and state[head] == _READY and all(
                    m not in taken and view.devices[m].n_tasks == 0 and view.fits(head, m)
                    for m in members):
                out.append(Placement(head, members[0], members[1:]))
                taken.update(members)
                continue
            if state[head] == _READY and not members:
                chosen = head if fits_memory(memory[head], dev.memory_free) else None
            else:  # fill the gap before the head's planned start
                limit = self.plan.start[head] - view.time
                for t in queue[1:]:
                    if (state[t] == _READY and t not in gangs
                            and self.plan.duration[t] <= limit + 1e-9
                            and fits_memory(memory[t], dev.memory_free)):
                        chosen = t
                        break
            if chosen is not None:
                # the queue is left as it is: a caller may apply only some of
                # these placements, and started tasks drop out lazily above
                out.append(Placement(chosen, dev.index))
                taken.add(dev.index)
        return out

    def _unstick(self, view: ClusterView) -> list[Placement]:
        """Nothing runs and the plan waits for a task that cannot start (its
        device is taken by memory from outside): start the most urgent ready
        task that fits anywhere, where it would run fastest."""
        fitting = [(t, d.index) for t in view.ready for d in view.devices
                   if view.fits(t, d.index)]
        gangs: dict[int, tuple[int, ...]] = {}
        for t in {t for t, _ in fitting if view.gpus(t) > 1}:
            gang = pick_gang(view.pool, view.gpus(t), [d for u, d in fitting if u == t],
                             partial(view.nominal_runtime, t))
            if gang is not None:
                gangs[t] = gang
        fitting = [(t, d) for t, d in fitting if view.gpus(t) == 1 or t in gangs]
        if not fitting:
            return []
        t = max({t for t, _ in fitting}, key=lambda t: (self.plan.priority.get(t, 0.0), -t))
        if t in gangs:
            return [Placement(t, gangs[t][0], gangs[t][1:])]
        devices = [d for u, d in fitting if u == t]
        return [Placement(t, min(devices, key=lambda d: view.nominal_runtime(t, d)))]


def expected_end(now: float, start: float, runtime: float) -> float:
    """When a task started at ``start``, predicted to run ``runtime``, is
    expected to end, seen at ``now``: as predicted, or if it is already past
    that, after overrunning as much again (it ends neither now, which would
    treat its device as free, nor at a guess that ignores what it has shown)."""
    predicted = start + runtime
    return predicted if predicted >= now else 2.0 * now - predicted


def world_key(view: ClusterView) -> tuple:
    """What, when it changes, makes a plan stale."""
    memory = view.table.memory
    ours = [0.0] * len(view.devices)
    for r in view.running:
        if r.device >= 0:
            ours[r.device] += memory[r.task]
    # (a device's index is its position)
    return (view.n_arrived,
            tuple([(d.healthy, round(d.clock_ratio, 2), round(d.memory_used - o, 1))
                   for d, o in zip(view.devices, ours)]))


class WorldKey:
    """:func:`world_key`, kept between decisions: a device's entry is read
    again only where its telemetry sample is a new object (the simulator
    keeps a device's sample until something on it changes, a task starting
    or ending there included; see :attr:`rlsched.view.ClusterView.devices`).
    On 512 GPUs the key's two roundings per device were half of ``heft``'s
    decision. The live daemon's views, all samples new, read every device."""

    __slots__ = ("_devices", "_table", "_entries")

    def __init__(self) -> None:
        self._devices: tuple[DeviceTelemetry, ...] | None = None
        self._table: WorkloadTable | None = None
        self._entries: list[tuple[bool, float, float]] = []

    def __call__(self, view: ClusterView) -> tuple:
        devices, old = view.devices, self._devices
        if old is None or len(old) != len(devices) or view.table is not self._table:
            changed: Sequence[int] = range(len(devices))
            self._entries = [(True, 0.0, 0.0)] * len(devices)
            self._table = view.table
        else:
            changed = list(compress(range(len(devices)), map(is_not, devices, old)))
        self._devices = devices
        if changed:
            memory, entries = view.table.memory, self._entries
            # what our tasks hold on each changed device, summed in the order
            # world_key sums it (the running tasks' order)
            ours = dict.fromkeys(changed, 0.0)
            for r in view.running:
                if r.device in ours:
                    ours[r.device] += memory[r.task]
            for d in changed:
                dev = devices[d]
                entries[d] = (dev.healthy, round(dev.clock_ratio, 2),
                              round(dev.memory_used - ours[d], 1))
        return (view.n_arrived, tuple(self._entries))


def planned_cost(view: ClusterView, task: int, device: int) -> float:
    """Runtime of ``task`` on ``device`` at its nominal speed and current clock."""
    return view.nominal_runtime(task, device) / (view.devices[device].clock_ratio or 1.0)
