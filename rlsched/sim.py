"""The discrete-event simulator of a GPU pool running DAG jobs.

Time jumps from event to event (job arrivals, task completions, perturbation
changes) on a heap of ``(time, counter, ...)``: the counter breaks ties, so a
run is deterministic under its seed. At each *decision point* (a GPU task is
ready and some healthy device has memory for it) the simulator hands out a
:class:`~rlsched.view.ClusterView` and waits for placements::

    sim = Simulator(instance, pool, seed=0)
    view = sim.reset()
    while view is not None:
        view = sim.step(scheduler.decide(view))
    sim.result()

``step([])`` means *wait*: time advances to the next event. After a non-empty
step the simulator asks again at the same time while a decision is still
possible, so a policy may place one task per call (the Gym environment) or
many (the heuristics).

What schedulers know: each task's true work drives time and is kept here,
beside the table (:attr:`Simulator.work`), never in a view. A view holds the
runtime model's predictions (:mod:`rlsched.runtime_model`), fed by the
tasks that finish in the episode, from estimates drawn by an estimate model
(:mod:`rlsched.estimates`); with ``exact`` estimates it holds the truth.

Model (see :mod:`rlsched.pool` for speeds and interference): a task runs on
one device from start to end, unless that device fails, in which case it is
lost and becomes ready again. A task of ``gpus: N`` (a gang) runs on N
devices at once, at its slowest member's speed, and is lost when any of them
fails (see :mod:`rlsched.gangs`). Tasks share a device while its memory allows,
each slowed by the others. CPU-only tasks start as soon as they are ready on
the host, which is not a scheduled resource. Data transfers between devices
are not modelled: on one workstation they take little next to task runtimes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import compress, islice, takewhile
from operator import sub
from typing import cast

import numpy as np

from rlsched.errors import InputError, SchedulerError
from rlsched.estimates import EXACT, EstimateModel
from rlsched.gangs import allowed_span, span_factor
from rlsched.perturbations import EXTERNAL, FAILURE, THROTTLE, Perturbations
from rlsched.pool import Pool, fits_memory
from rlsched.runtime_model import RuntimeModel, log_estimate
from rlsched.table import WorkloadTable
from rlsched.view import (
    EVERY_KIND,
    AttainedService,
    ClusterView,
    DeviceTelemetry,
    Placement,
    ReadyQueue,
    RunningTask,
    TaskState,
)
from rlsched.workload import Instance, validate_fits, validate_gangs, validate_placement

_ARRIVE, _FINISH, _PERTURB_ON, _PERTURB_OFF = 0, 1, 2, 3
_EPS = 1e-9
#: attempts of one task lost to device failures before the episode is
#: refused: a task far longer than the time between failures never ends
MAX_LOSSES = 100
#: from this many devices up, the idle ones are kept between decisions for a
#: scheduler of idle devices (below it a pass over them all is cheaper)
WIDE_POOL = 32

UNARRIVED, BLOCKED, READY, RUNNING, DONE = (int(s) for s in TaskState)


class Attempt:
    """One run of a task on a device (a gang: on ``devices``), for the trace."""

    __slots__ = ("task", "device", "start", "end", "ok", "devices")

    def __init__(self, task: int, device: int, start: float, end: float, ok: bool,
                 devices: tuple[int, ...] | None = None) -> None:
        self.task, self.device, self.start, self.end, self.ok = task, device, start, end, ok
        #: every device it held, ``device`` first
        self.devices = devices or (device,)

    def __reduce__(self) -> tuple[type[Attempt], tuple[object, ...]]:
        # rebuilt from its fields: compiled, it is a native class, which
        # pickle (evaluate's workers send traces back) cannot copy field by field
        return Attempt, (self.task, self.device, self.start, self.end, self.ok, self.devices)

    def __repr__(self) -> str:
        where = self.device if len(self.devices) == 1 else list(self.devices)
        return f"Attempt({self.task}, dev={where}, {self.start:.3f}-{self.end:.3f}, ok={self.ok})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attempt) and (
            (self.task, self.devices, self.start, self.end, self.ok)
            == (other.task, other.devices, other.start, other.end, other.ok))


@dataclass
class SimResult:
    """What an episode produced: its trace and per-job times.

    :param trace: every attempt, in order of ending (failed ones have ``ok=False``)
    :param job_arrival: arrival time of each job (table order)
    :param job_finish: completion time of each job (table order)
    :param decisions: placements made
    :param work: each task's true work (for metrics and bounds, after the fact)
    :param colocation_gain: the most the workload's measured co-location lets
        two tasks sharing a device of this pool do together, against one alone
        (1 without measurements), for the bounds
    """

    table: WorkloadTable
    pool: Pool
    trace: list[Attempt]
    job_arrival: list[float]
    job_finish: list[float]
    decisions: int = 0
    busy: list[float] = field(default_factory=list)
    work: tuple[float, ...] = ()
    colocation_gain: float = 1.0


def _episode_copy(value):
    """A copy of a simulator attribute that the copy can step without touching
    the original: containers are copied (lists of lists one level down, and
    what a dict holds where it copies itself, as timelines do); everything
    else (numbers, the table, the pool, the instance, tuples) is immutable
    and shared."""
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, list):
        return [list(v) if isinstance(v, list) else v for v in value]
    if isinstance(value, set):
        return set(value)
    if isinstance(value, dict):
        return {k: v.copy() if hasattr(v, "copy") else v for k, v in value.items()}
    if isinstance(value, RuntimeModel):
        return value.copy()
    return value


_UNSET = object()


def _attribute_names(sim: Simulator) -> tuple[str, ...]:
    """Every attribute a simulator may hold: its own, or, compiled (a native
    class, which has no ``__dict__`` and cannot be copied by ``copy``), every
    one its class declares (some may be unset)."""
    declared: tuple[str, ...] | None = getattr(type(sim), "__mypyc_attrs__", None)
    return declared if declared is not None else tuple(vars(sim))


#: the tables of the last few instances simulated: evaluating several
#: schedulers on one instance builds its table once
_TABLES: dict[int, tuple[Instance, WorkloadTable, tuple[float, ...]]] = {}


def _table_of(instance: Instance) -> tuple[WorkloadTable, tuple[float, ...]]:
    hit = _TABLES.get(id(instance))
    if hit is not None and hit[0] is instance:
        return hit[1], hit[2]
    table, work = WorkloadTable.with_truth(instance.jobs)
    if len(_TABLES) >= 8:
        _TABLES.pop(next(iter(_TABLES)))
    _TABLES[id(instance)] = (instance, table, work)
    return table, work


class Simulator:
    """Simulate ``instance`` on ``pool``.

    :param instance: the jobs, with their arrival times already set
    :param pool: the devices
    :param seed: seeds the perturbations (the only randomness inside)
    :param perturbations: which perturbations are on (default: none)
    :param estimates: what schedulers are told (default ``exact``: the truth;
        ``evaluate`` and the environment default to
        :data:`rlsched.estimates.DEFAULT_ESTIMATES`); drawn under ``seed``
    :param history: a runtime model to start from (a training history); each
        episode starts from a copy of it
    :param idle_only: the scheduler starts tasks only on idle devices and keeps
        no state between decisions (:attr:`Scheduler.idle_only`): a moment
        when a ready task fits only beside running ones is then no decision
        point, since such a scheduler would only wait there. No schedule
        changes; the episode runs with fewer views.
    :param learns: the runtime model learns from each finished task and
        re-predicts the tasks whose belief that moves (the default). False
        for a scheduler that reads no beliefs (:attr:`Scheduler.reads_beliefs`):
        the view then keeps every task's first prediction, which such a
        scheduler never reads, and the episode skips the model's cost. With
        a gang in the workload the model learns anyway, since a gang's
        members are picked by expected runtime (:func:`rlsched.gangs.pick_gang`).
    """

    def __init__(self, instance: Instance, pool: Pool, seed: int = 0,
                 perturbations: Perturbations | None = None,
                 estimates: EstimateModel | None = None,
                 history: RuntimeModel | None = None, idle_only: bool = False,
                 learns: bool = True, *, twin_of: Simulator | None = None) -> None:
        if twin_of is not None:  # (see fork)
            for name in _attribute_names(twin_of):
                value = getattr(twin_of, name, _UNSET)
                if value is not _UNSET:
                    setattr(self, name, _episode_copy(value))
            return
        self.pool = pool
        self.idle_only = idle_only
        self.seed = seed
        self.perturbations = perturbations or Perturbations()
        self.estimates = estimates or EXACT
        self.history = history
        validate_fits(instance, pool.max_memory, pool.name)
        validate_placement(instance, pool)
        validate_gangs(instance, pool)
        self.instance = instance
        table, work = _table_of(instance)
        #: the truth: each task's work in reference-seconds, table order
        self.work = work
        #: what schedulers are told, the estimates drawn (exact: the truth)
        self.table = replace(table, estimate=self.estimates.draw(table, work, seed))
        self._tasks_by_key = table.tasks_by_key  # the cached table's, computed once
        self.learns = learns or table.has_gangs
        self._speed = [(d.model.compute_speed, d.model.memory_speed) for d in pool.devices]
        #: measured slowdowns of task types sharing a device:
        #: ``(model, key a, key b) -> (a's fraction of its speed alone, b's)``
        self._colocation = instance.colocation or None
        models = {d.model.name for d in pool.devices}
        self.colocation_gain = max([1.0, *(a + b for (m, _, _), (a, b) in
                                           (instance.colocation or {}).items() if m in models)])
        self._mem_total = [d.model.memory_gib for d in pool.devices]
        hosts = {d.host: i for i, d in enumerate(pool.devices)}
        self._host = [hosts[d.host] for d in pool.devices]

    # ------------------------------------------------------------------ episode
    def reset(self) -> ClusterView | None:
        """Start the episode; return the first decision point (``None`` if the
        workload needs no decision at all)."""
        tb = self.table
        n, g = tb.n_tasks, len(self.pool)
        self.now = 0.0
        self._heap: list[tuple] = []
        self._seq = 0
        self.state = bytearray(n)
        self._pending = [len(p) for p in tb.parents]
        self._remaining = list(self.work)
        self._rate = [0.0] * n
        self._version = [0] * n
        self._device = [-1] * n
        self._start = [0.0] * n
        self._ready: dict[int, None] = {}
        #: every change of the ready set, for schedulers that keep their own
        #: order of it (:class:`rlsched.view.ReadyCursor`): t in, ~t out
        self._ready_log: list[int] = []
        #: every history key whose unfinished tasks were re-predicted, in order
        #: (:attr:`rlsched.view.ClusterView.belief_log`)
        self._belief_log: list[str] = []
        #: how many ready tasks need each amount of memory: whether any fits
        #: anywhere is then one comparison, not a pass over the queue
        self._ready_memory: dict[float, int] = {}
        self._running: dict[int, RunningTask] = {}
        #: the devices of each running gang; a gang's work is brought up to
        #: date per task (``_updated``), not per device, since it runs on several
        self._gang_of: dict[int, tuple[int, ...]] = {}
        #: the running tasks of each job that has any, in the order they
        #: started: one job's attained service without a pass over all
        self._job_running: dict[int, dict[int, None]] = {}
        self._updated = [0.0] * n
        self._losses: dict[int, int] = {}  # attempts of each task lost to failures
        self._on_device: list[list[int]] = [[] for _ in range(g)]
        self._mem_used = [0.0] * g
        self._ext_load = [0.0] * g
        self._ext_mem = [0.0] * g
        self._throttle = [1.0] * g
        self._healthy = [True] * g
        self._last = [0.0] * g
        self._busy = [0.0] * g
        self._telemetry: list[DeviceTelemetry | None] = [None] * g
        #: devices whose sample is out of date (may repeat): resampled at the next view
        self._stale = list(range(g))
        #: the healthy devices running nothing, as of the first ``_idle_mark``
        #: entries of ``_stale`` (:meth:`_idle_devices`): kept for a scheduler
        #: of idle devices on a wide pool, where a pass over every device
        #: before each decision costs more than the decision
        self._wide = self.idle_only and g >= WIDE_POOL
        self._idle: set[int] = set()
        self._idle_mark = 0
        #: (minus the memory free, device) per change of a device, as of the
        #: first ``_free_mark`` entries of ``_stale`` (:meth:`_most_free`): kept
        #: on a wide pool for a scheduler that shares, which asks before each
        #: decision (on a few devices the pass over them costs less)
        self._keeps_free = not self.idle_only and g >= WIDE_POOL
        self._free_heap: list[tuple[float, int]] = []
        self._free_mark = 0
        predicted = self._start_knowledge()
        self._job_remaining = [sum(predicted[t] for t in tb.tasks_of(j)) for j in range(tb.n_jobs)]
        self._job_left = [len(tb.tasks_of(j)) for j in range(tb.n_jobs)]
        self._attained = [0.0] * tb.n_jobs  # GPU device-seconds of ended attempts
        self._job_finish = [float("nan")] * tb.n_jobs
        self._n_arrived = 0
        self._tasks_left = n
        self.trace: list[Attempt] = []
        self.decisions = 0
        self._timelines = {}
        for j, job in enumerate(tb.jobs):
            self._push(job.arrival, _ARRIVE, j, None)
        for d in range(g):
            for kind in self.perturbations.active:
                it = self.perturbations.timeline(self.seed, d, kind)
                self._timelines[d, kind] = it
                start, end, value = next(it)
                self._push(start, _PERTURB_ON, d, (kind, end, value))
        return self._advance()

    @property
    def job_finish(self) -> list[float]:
        """Completion time of each job so far (NaN while unfinished); read-only."""
        return self._job_finish

    @property
    def done(self) -> bool:
        return self._tasks_left == 0

    def step(self, placements: list[Placement] | tuple[Placement, ...]) -> ClusterView | None:
        """Apply ``placements`` (none: wait for the next event); return the
        next decision point, or ``None`` when every task has finished."""
        for p in placements:
            self._place(p[0], p[1], p[2] if len(p) > 2 else ())
        if placements and self._decision_possible():
            return self._view()
        if not placements and not self._running and not self._has_pending_change():
            names = ", ".join("/".join(self.table.task_ids[t]) for t in list(self._ready)[:3])
            raise SchedulerError(
                f"the scheduler waited at t={self.now:.3f} with nothing running and nothing "
                f"left to happen; ready tasks: {names}")
        return self._advance()

    def result(self) -> SimResult:
        if not self.done:
            raise SchedulerError("the episode has not finished")
        return SimResult(self.table, self.pool, self.trace,
                         [j.arrival for j in self.table.jobs], list(self._job_finish),
                         self.decisions, list(self._busy), self.work, self.colocation_gain)

    def fork(self, weather: int | None = None, arrivals: bool = True) -> Simulator:
        """An independent copy of this episode as it stands now: stepping one
        never changes the other. For what-if rollouts: try a placement, play
        the rest out, compare.

        By default both face the same future (arrivals, perturbations): a
        hindsight copy. For planning without foresight:

        :param weather: a seed for perturbations drawn anew from now on: the
            twin's throttling, outside load and failures, and the ends of
            those under way, come from the same model but not this episode
        :param arrivals: False: jobs that have not arrived never do (the twin
            ends when the arrived ones finish; the others' finish stays NaN)
        """
        twin = Simulator(self.instance, self.pool, twin_of=self)
        if weather is not None or not arrivals:
            twin._redraw_future(weather, arrivals)
        return twin

    def _redraw_future(self, weather: int | None, arrivals: bool) -> None:
        """See :meth:`fork`: drop future arrivals, or redraw the weather."""
        rng = np.random.default_rng([self.seed, 104729, weather or 0, int(self.now * 1000)])
        p = self.perturbations
        lengths = {THROTTLE: p.throttle_for, EXTERNAL: p.external_for, FAILURE: p.fail_for}
        kept, under_way = [], set()
        for event in self._heap:
            time, seq, what, a, b = event
            if what == _ARRIVE and not arrivals:
                self._tasks_left -= len(self.table.tasks_of(a))
                continue
            if weather is not None and what == _PERTURB_ON:
                continue
            if weather is not None and what == _PERTURB_OFF:
                under_way.add((a, b[0]))
                event = (self.now + float(rng.exponential(lengths[b[0]])), seq, what, a, b)
            kept.append(event)
        heapq.heapify(kept)
        self._heap = kept
        if weather is None:
            return
        for d, kind in sorted(self._timelines):
            timeline = p.timeline(int(rng.integers(2**31)), d, kind)
            timeline.t = self.now
            self._timelines[d, kind] = timeline
            if (d, kind) not in under_way:
                start, end, value = next(timeline)
                self._push(start, _PERTURB_ON, d, (kind, end, value))

    def can_place(self, task: int, device: int, gang: tuple[int, ...] = ()) -> bool:
        """Whether placing ``task`` on ``device`` (and, for a gang, its other
        devices ``gang``) now would be accepted."""
        if not (0 <= task < self.table.n_tasks and self.state[task] == READY
                and self.table.gpu[task] and self.table.gpus[task] == 1 + len(gang)):
            return False
        if gang:
            devices = (device, *gang)
            if len(set(devices)) != len(devices) or not all(
                    0 <= d < len(self._healthy) for d in devices) \
                    or not allowed_span(self.pool, devices):
                return False
            return all(self._device_takes(task, d) for d in devices)
        return 0 <= device < len(self._healthy) and self._device_takes(task, device)

    def _device_takes(self, task: int, d: int) -> bool:
        return (self._healthy[d] and fits_memory(self.table.memory[task], self._free(d))
                and (self.table.placement is None or self._may_use(task, d)))

    def _may_use(self, task: int, device: int) -> bool:
        return self.table.may_use(task, device, self.pool.devices[device].model.name)

    # ------------------------------------------------------------------ internals
    def _push(self, time: float, what: int, a: int, b: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, what, a, b))

    def _enqueue(self, t: int) -> None:
        self._ready[t] = None
        self._ready_log.append(t)
        m = self.table.memory[t]
        self._ready_memory[m] = self._ready_memory.get(m, 0) + 1

    def _unready(self, t: int) -> None:
        del self._ready[t]
        self._ready_log.append(~t)
        m = self.table.memory[t]
        left = self._ready_memory[m] - 1
        if left:
            self._ready_memory[m] = left
        else:
            del self._ready_memory[m]

    def _free(self, d: int) -> float:
        return self._mem_total[d] - self._mem_used[d] - self._ext_mem[d]

    def _has_pending_change(self) -> bool:
        """Whether waiting can still change anything: a job yet to arrive, or a
        device that is down or loaded from outside and will come back."""
        return (self._n_arrived < self.table.n_jobs
                or not all(self._healthy) or any(self._ext_mem) or any(self._ext_load))

    def _decision_possible(self) -> bool:
        if not self._ready:
            return False
        total, used, ext, healthy = self._mem_total, self._mem_used, self._ext_mem, self._healthy
        # the devices open to a task, and the most memory free among them; in
        # C-level passes where every device is open to a task (on a wide pool
        # this runs before every decision of a scheduler that shares)
        open_: Sequence[int]
        if self._wide:
            idle = self._idle_devices()
            if self.table.placement is None and not self.table.has_gangs:
                # as below (fits_memory grows with the room), without a pass
                # over every idle device when the first one takes a task
                need = min(self._ready_memory)
                for d in idle:
                    free = total[d] - used[d] - ext[d]
                    if free >= 0 and fits_memory(need, free):
                        return True
                return False
            open_ = sorted(idle)
        elif self.idle_only:
            on = self._on_device
            open_ = [d for d, up in enumerate(healthy) if up and not on[d]]
        elif all(healthy):
            open_ = range(len(healthy))
        else:
            open_ = list(compress(range(len(healthy)), healthy))
        if not open_:
            return False
        if len(open_) == len(healthy):
            best = self._most_free() if self._keeps_free else \
                max(map(sub, map(sub, total, used), ext))
        else:
            best = max([total[d] - used[d] - ext[d] for d in open_])
        if best < 0:
            return False
        memory = self.table.memory
        if self.table.has_gangs:
            gpus = self.table.gpus
            return any(self._gang_fits(t, open_) if gpus[t] > 1 else
                       any(self._device_takes(t, d) for d in open_) for t in self._ready)
        if self.table.placement is None:  # fits_memory grows with the room: the least need
            return fits_memory(min(self._ready_memory), best)
        return any(fits_memory(memory[t], self._free(d)) and self._may_use(t, d)
                   for t in self._ready for d in open_)

    def _most_free(self) -> float:
        """The most memory free on any device, ``max(total - used - ext)``,
        from a heap kept between calls: the devices changed since the last
        call (every change to a device's memory goes through
        :meth:`_progress`, which marks it stale) push their value now, and
        an entry is current where it equals its device's value now. The same
        float as the pass over every device, which on a wide pool before
        each decision of a scheduler that shares cost as much as the rest of
        the simulator's step."""
        self._push_free()
        heap, total, used, ext = self._free_heap, self._mem_total, self._mem_used, self._ext_mem
        while True:
            minus, d = heap[0]
            if -minus == total[d] - used[d] - ext[d]:
                return -minus
            heapq.heappop(heap)

    def _push_free(self) -> None:
        """Bring :meth:`_most_free`'s heap up to the stale marks (rebuilt from
        every device instead where its entries would outnumber the devices
        three to one)."""
        if not self._keeps_free:
            return
        stale, heap = self._stale, self._free_heap
        if self._free_mark == len(stale):
            return
        total, used, ext = self._mem_total, self._mem_used, self._ext_mem
        if len(heap) + len(stale) - self._free_mark > 3 * len(total):
            heap[:] = [(-(total[d] - used[d] - ext[d]), d) for d in range(len(total))]
            heapq.heapify(heap)
        else:
            for d in islice(stale, self._free_mark, None):
                heapq.heappush(heap, (-(total[d] - used[d] - ext[d]), d))
        self._free_mark = len(stale)

    def _idle_devices(self) -> set[int]:
        """The healthy devices running nothing, brought up to date from the
        devices changed since the last call (every change to a device's
        tasks or health goes through :meth:`_progress`, which marks it stale)."""
        stale, idle = self._stale, self._idle
        if self._idle_mark < len(stale):
            healthy, on = self._healthy, self._on_device
            for d in islice(stale, self._idle_mark, None):
                if healthy[d] and not on[d]:
                    idle.add(d)
                else:
                    idle.discard(d)
            self._idle_mark = len(stale)
        return idle

    def _gang_fits(self, t: int, devices: Sequence[int]) -> bool:
        """Whether enough of ``devices`` take gang ``t`` now, on one host or on linked hosts."""
        per_host = [0] * (max(self._host) + 1)
        for d in devices:
            if self._device_takes(t, d):
                per_host[self._host[d]] += 1
        n = self.table.gpus[t]
        return max(per_host) >= n or (self.pool.hosts_linked and sum(per_host) >= n)

    def _place(self, task: int, device: int, gang: tuple[int, ...] = ()) -> None:
        if not self.can_place(task, device, gang):
            raise SchedulerError(self._why_not(task, device, gang))
        self._unready(task)
        if gang:
            self._start_gang(task, (device, *gang))
        else:
            self._start_task(task, device)
        self.decisions += 1

    def _why_not(self, task: int, device: int, gang: tuple[int, ...] = ()) -> str:
        if not 0 <= task < self.table.n_tasks:
            return f"placement of unknown task index {task}"
        name = "/".join(self.table.task_ids[task])
        if self.state[task] != READY:
            return f"task {name} is {TaskState(self.state[task]).name.lower()}, not ready"
        if not self.table.gpu[task]:
            return f"task {name} is CPU-only and cannot be placed on a device"
        need = self.table.gpus[task]
        if need != 1 + len(gang):
            return f"task {name} takes {need} GPUs at once, not {1 + len(gang)}"
        devices = (device, *gang)
        if len(set(devices)) != len(devices):
            return f"task {name} was given one device twice: {list(devices)}"
        if gang and all(0 <= d < len(self._healthy) for d in devices) \
                and not allowed_span(self.pool, devices):
            return f"task {name} may not span hosts (the pool's hosts are not linked)"
        for d in devices[:-1]:
            if not (0 <= d < len(self._healthy) and self._device_takes(task, d)):
                device = d
                break
        else:
            device = devices[-1]
        if not 0 <= device < len(self._healthy):
            return f"device {device} does not exist (pool has {len(self._healthy)})"
        if not self._healthy[device]:
            return f"device {device} is not healthy"
        if not self._may_use(task, device):
            return f"task {name} may not use device {device} (its gpus_allowed / gpus_avoid)"
        return (f"task {name} needs {self.table.memory[task]:.2f} GiB but device {device} "
                f"has {self._free(device):.2f} GiB free")

    def _start_task(self, t: int, d: int) -> None:
        now = self.now
        self.state[t] = RUNNING
        self._device[t] = d
        self._start[t] = now
        self._running[t] = RunningTask(t, d, now)
        self._job_running.setdefault(self.table.job_of[t], {})[t] = None
        if d < 0:  # CPU-only: the host runs it at reference speed
            self._rate[t] = 1.0
            self._version[t] += 1
            self._push(now + self._remaining[t], _FINISH, t, self._version[t])
            return
        self._progress(d)
        self._on_device[d].append(t)
        self._mem_used[d] += self.table.memory[t]
        self._reschedule(d)

    def _start_gang(self, t: int, devices: tuple[int, ...]) -> None:
        now = self.now
        self.state[t] = RUNNING
        self._device[t] = devices[0]
        self._start[t] = now
        self._running[t] = RunningTask(t, devices[0], now)
        self._job_running.setdefault(self.table.job_of[t], {})[t] = None
        self._gang_of[t] = devices
        for d in devices:
            self._progress(d)
        self._updated[t] = now
        memory = self.table.memory[t]
        for d in devices:
            self._on_device[d].append(t)
            self._mem_used[d] += memory
        for d in devices:
            self._reschedule(d)

    def _progress(self, d: int) -> None:
        """Bring the remaining work of ``d``'s tasks up to now."""
        now = self.now
        dt = now - self._last[d]
        if dt > 0:
            on = self._on_device[d]
            if on:
                self._busy[d] += dt
                rem, rate = self._remaining, self._rate
                if self._gang_of:
                    gang_of, updated = self._gang_of, self._updated
                    for t in on:
                        if t in gang_of:  # once per gang, whichever member comes first
                            rem[t] -= rate[t] * (now - updated[t])
                            updated[t] = now
                        else:
                            rem[t] -= rate[t] * dt
                else:
                    for t in on:
                        rem[t] -= rate[t] * dt
            self._last[d] = now
        self._telemetry[d] = None
        self._stale.append(d)

    def _reschedule(self, d: int) -> None:
        """New rates (and completion events) for ``d``'s tasks after a change."""
        on = self._on_device[d]
        if not on:
            return
        factor = self._throttle[d] / (
            1.0 + self.pool.interference * (len(on) - 1 + self._ext_load[d]))
        speeds = self._speed[d]
        kind, rem, rate, version = self.table.kind, self._remaining, self._rate, self._version
        gang_of = self._gang_of
        own = self.table.speeds is not None
        if own or self._colocation is not None:
            factors = self._factors(d, on, factor)
        for t in on:
            if gang_of and t in gang_of:
                r = self._gang_rate(t, gang_of[t])
            elif own or self._colocation is not None:
                r = factors[t]
            else:
                r = speeds[kind[t]] * factor
            rate[t] = r
            version[t] += 1
            self._push(self.now + max(rem[t], 0.0) / r, _FINISH, t, version[t])

    def _task_speed(self, t: int, d: int) -> float:
        """Task ``t``'s nominal speed on device ``d`` (its own measured one, if any)."""
        if self.table.speeds is None:
            return self._speed[d][self.table.kind[t]]
        return self.table.speed(t, self.pool.devices[d].model)

    def _factors(self, d: int, on: list[int], factor: float) -> dict[int, float]:
        """The rate of each task on ``d``: its own speed there, slowed by the
        measured co-location of the pair where the workload has it (two
        tasks of one GPU each, and their types measured together on this
        model), else by the interference model's ``factor``."""
        rates = {t: self._task_speed(t, d) * factor for t in on}
        colocation = self._colocation
        if colocation is not None and len(on) == 2 and self.table.gpus[on[0]] == 1 \
                and self.table.gpus[on[1]] == 1:
            a, b = on
            keys = self.table.history_key
            pair = colocation.get((self.pool.devices[d].model.name, keys[a], keys[b]))
            if pair is not None:
                scale = self._throttle[d] / (1.0 + self.pool.interference * self._ext_load[d])
                rates[a] = self._task_speed(a, d) * pair[0] * scale
                rates[b] = self._task_speed(b, d) * pair[1] * scale
        return rates

    def _gang_rate(self, t: int, devices: tuple[int, ...]) -> float:
        """A gang's speed: its slowest member's, each slowed as a lone task
        there would be, times the span factor."""
        interference = self.pool.interference
        slowest = min(self._task_speed(t, d) * self._throttle[d] / (
            1.0 + interference * (len(self._on_device[d]) - 1 + self._ext_load[d]))
            for d in devices)
        return slowest * span_factor(self.pool, devices)

    def _advance(self) -> ClusterView | None:
        """Process events until a decision point or the end of the episode."""
        heap = self._heap
        while self._tasks_left:
            if not heap:
                raise SchedulerError("no events left but tasks remain (a simulator bug)")
            time = heap[0][0]
            self.now = time
            while heap and heap[0][0] <= time + _EPS:
                _, _, what, a, b = heapq.heappop(heap)
                if what == _FINISH:
                    if b == self._version[a] and self.state[a] == RUNNING:
                        self._finish(a)
                elif what == _ARRIVE:
                    self._arrive(a)
                elif what == _PERTURB_ON:
                    self._perturb(a, b, on=True)
                else:
                    self._perturb(a, b, on=False)
            if self._tasks_left and self._decision_possible():
                return self._view()
        return None

    def _arrive(self, j: int) -> None:
        self._n_arrived = max(self._n_arrived, j + 1)
        if self._model is not None:
            self._known = known = self.table.job_start[self._n_arrived]
            tb = self.table
            if self._model.version != self._first_version:  # else its beliefs are current
                open_by_key = self._open_by_key
                for key in {tb.history_key[t] for t in tb.tasks_of(j)}:
                    self._repredict(open_by_key[key], key, known)
        for t in self.table.tasks_of(j):
            self.state[t] = BLOCKED
            if self._pending[t] == 0:
                self._make_ready(t)

    def _make_ready(self, t: int) -> None:
        self.state[t] = READY
        if self.table.gpu[t]:
            self._enqueue(t)
        else:
            self._start_task(t, -1)

    def _not_running(self, t: int) -> None:
        """Take ``t`` out of its job's running tasks."""
        j = self.table.job_of[t]
        running = self._job_running[j]
        del running[t]
        if not running:
            del self._job_running[j]

    def _finish(self, t: int) -> None:
        tb = self.table
        d = self._device[t]
        now = self.now
        members = self._gang_of.pop(t, None) or ((d,) if d >= 0 else ())
        for m in members:
            self._progress(m)
            self._on_device[m].remove(t)
            self._mem_used[m] -= tb.memory[t]
            if not self._on_device[m]:
                self._mem_used[m] = 0.0  # no float residue on an idle device
        del self._running[t]
        self._not_running(t)
        self._attained[tb.job_of[t]] += (now - self._start[t]) * len(members)
        self.state[t] = DONE
        self._remaining[t] = 0.0
        self.trace.append(Attempt(t, d, self._start[t], now, True, members or None))
        self._tasks_left -= 1
        j = tb.job_of[t]
        self._job_remaining[j] -= self._predicted[t]
        if self._model is not None and self.learns:
            self._learn(t, members)
        self._job_left[j] -= 1
        if self._job_left[j] == 0:
            self._job_finish[j] = now
            self._job_remaining[j] = 0.0
        for c in tb.children[t]:
            self._pending[c] -= 1
            if self._pending[c] == 0 and self.state[c] == BLOCKED:
                self._make_ready(c)
        for m in members:
            self._reschedule(m)

    def _perturb(self, d: int, payload: tuple, on: bool) -> None:
        kind, end, value = payload
        self._progress(d)
        if kind == THROTTLE:
            self._throttle[d] = value[0] if on else 1.0
        elif kind == EXTERNAL:
            if on:
                self._ext_load[d] = value[0]
                self._ext_mem[d] = min(value[1], max(self._free(d), 0.0))
            else:
                self._ext_load[d] = self._ext_mem[d] = 0.0
        elif kind == FAILURE:
            self._healthy[d] = not on
            if on:
                self._fail_device(d)
        if on:
            self._push(end, _PERTURB_OFF, d, payload)
        elif self._tasks_left:
            start, nxt_end, nxt_value = next(self._timelines[d, kind])
            self._push(start, _PERTURB_ON, d, (kind, nxt_end, nxt_value))
        self._reschedule(d)

    def _fail_device(self, d: int) -> None:
        """Every task on ``d`` is lost and becomes ready again (a gang on
        ``d`` leaves its other devices too)."""
        now = self.now
        left: list[int] = []
        for t in self._on_device[d]:
            self._losses[t] = self._losses.get(t, 0) + 1
            if self._losses[t] >= MAX_LOSSES:
                name = "/".join(self.table.task_ids[t])
                raise InputError("--perturb", f"task {name} was lost to device failures "
                                 f"{MAX_LOSSES} times: it runs {self.work[t]:,.0f} reference-"
                                 "seconds, far longer than the time between failures "
                                 f"({self.perturbations.fail_every:,.0f} s on average), and "
                                 "would never finish (perturb without failures, or with "
                                 "fewer)")
            members = self._gang_of.pop(t, None)
            if members:
                for m in members:
                    if m != d:
                        self._progress(m)
                        self._on_device[m].remove(t)
                        self._mem_used[m] -= self.table.memory[t]
                        if not self._on_device[m]:
                            self._mem_used[m] = 0.0
                        left.append(m)
            self.trace.append(Attempt(t, self._device[t], self._start[t], now, False, members))
            self._attained[self.table.job_of[t]] += (now - self._start[t]) * len(members or (d,))
            del self._running[t]
            self._not_running(t)
            self._remaining[t] = self.work[t]
            self._version[t] += 1
            self._device[t] = -1
            self.state[t] = READY
            self._enqueue(t)
        self._on_device[d] = []
        self._mem_used[d] = 0.0
        for m in dict.fromkeys(left):
            self._reschedule(m)

    # ------------------------------------------------------------------ knowledge
    def _start_knowledge(self) -> list[float]:
        """Every task's first prediction (the truth, with exact estimates)."""
        n = self.table.n_tasks
        self._known = 0  # tasks below this index belong to arrived jobs
        #: bumped when any prediction changes, and when one of an unfinished task does
        self._knows = self._open_knows = 0
        if self.estimates.exact:
            self._model: RuntimeModel | None = None
            self._predicted: list[float] = list(self.work)
            self._spread = [0.0] * n
            return self._predicted
        self._model = self.history.copy() if self.history is not None else RuntimeModel()
        self._first_version = self._model.version  # what every task was first predicted from
        #: each task's log estimate as the model reads it (NaN: none)
        self._log_estimate = [log_estimate(e) if e == e else math.nan for e in self.table.estimate]
        self._predicted = [0.0] * n
        self._spread = [0.0] * n
        self._job_remaining = [0.0] * self.table.n_jobs  # summed afresh by the caller
        #: each key's unfinished tasks, in table order (a key leaves when its
        #: last one finishes): a re-prediction walks only these
        self._open_by_key = {k: dict.fromkeys(ts) for k, ts in self._tasks_by_key.items()}
        for key, tasks in self._open_by_key.items():
            self._repredict(tasks, key, n)
        return self._predicted

    def _learn(self, t: int, devices: tuple[int, ...]) -> None:
        """Feed a finished task to the runtime model; re-predict the tasks of
        arrived jobs whose belief that changed."""
        tb, model = self.table, self._model
        assert model is not None
        if len(devices) == 1:  # span_factor is 1 on one device
            speed = self._task_speed(t, devices[0])
        elif devices:
            speed = min(self._task_speed(t, d) for d in devices) * span_factor(self.pool, devices)
        else:  # CPU-only: the host runs it at reference speed
            speed = 1.0
        key, estimate = tb.history_key[t], tb.estimate[t]
        measured = (self.now - self._start[t]) * speed
        # a finished task is known for what it took, as the daemon knows it from its store
        self._predicted[t], self._spread[t] = measured, 0.0
        self._knows += 1
        own, every = model.observe(key, estimate, measured)
        open_by_key = self._open_by_key
        mine = open_by_key[key]
        del mine[t]
        if not mine:
            del open_by_key[key]
        known = self._known
        if own and mine:
            self._repredict(mine, key, known)
        if every:
            for k, tasks in open_by_key.items():
                if (k != key or not own) and next(iter(tasks)) < known and model.uses_all(k):
                    self._repredict(tasks, k, known)

    def _repredict(self, tasks: dict[int, None], key: str, known: int) -> None:
        """The model's belief now about the unfinished ``tasks`` of ``key``
        (in table order) below index ``known``; each moves its job's
        remaining work."""
        assert self._model is not None
        first = next(iter(tasks), known)
        if first >= known:
            return
        a, b, s_with, b_without, s_without = self._model.coefficients(key)
        without, exp = math.exp(b_without), math.exp
        predicted, spread, log_est = self._predicted, self._spread, self._log_estimate
        remaining, job_of = self._job_remaining, self.table.job_of
        changed = 0
        # all below ``known`` (every job arrived): no bound to check per task
        for t in (tasks if next(reversed(tasks)) < known else
                  takewhile(known.__gt__, tasks)):
            le = log_est[t]
            if le == le:
                seconds, sigma = exp(a * le + b), s_with
            else:
                seconds, sigma = without, s_without
            old = predicted[t]
            if seconds != old or sigma != spread[t]:
                remaining[job_of[t]] += seconds - old
                predicted[t], spread[t] = seconds, sigma
                changed += 1
        if changed:
            self._knows = self._open_knows = self._knows + changed
            self._belief_log.append(key)

    # ------------------------------------------------------------------ the view
    def _view(self) -> ClusterView:
        tele = self._telemetry
        for d in self._stale:
            if tele[d] is None:
                tele[d] = self._sample(d)
        if self._wide:
            self._idle_devices()  # before the stale marks it reads are cleared
        self._push_free()  # (likewise)
        self._stale.clear()
        self._idle_mark = self._free_mark = 0
        running = tuple(self._running.values())
        if self._gang_of:  # a gang appears once per device it holds
            running += tuple(RunningTask(t, m, self._start[t])
                             for t, members in self._gang_of.items() for m in members[1:])
        return ClusterView(
            time=self.now, table=self.table, pool=self.pool, task_state=self.state,
            ready=ReadyQueue(self._ready), running=running,
            devices=cast("tuple[DeviceTelemetry, ...]", tuple(tele)),  # every one sampled above
            job_remaining=tuple(self._job_remaining), n_arrived=self._n_arrived,
            predicted=self._predicted, spread=self._spread,
            job_attained=AttainedService(self._attained, running, self.table.job_of, self.now,
                                         (self._job_running, self._running, self._gang_of)),
            knowledge=self._knows, open_knowledge=self._open_knows,
            ready_log=self._ready_log, ready_mark=len(self._ready_log),
            belief_log=self._belief_log, belief_mark=len(self._belief_log),
            known_kinds=EVERY_KIND if self._model is None else self._model.known_keys)

    def _sample(self, d: int) -> DeviceTelemetry:
        model = self.pool.devices[d].model
        if not self._healthy[d]:
            return DeviceTelemetry(d, 0.0, 0.0, model.memory_gib, 0.0, 0.0, model.power_w,
                                   0.0, model.max_clock_mhz, False, 0)
        n = len(self._on_device[d])
        util = 1.0 if n else min(1.0, self._ext_load[d])
        throttle = self._throttle[d]
        # throttling is the device's answer to heat: a throttled device runs hot
        temp = 32.0 + 48.0 * util if throttle == 1.0 else 88.0 + 8.0 * (1.0 - throttle)
        power = model.idle_w + (model.power_w - model.idle_w) * util * throttle
        return DeviceTelemetry(
            d, util, self._mem_used[d] + self._ext_mem[d], model.memory_gib, temp, power,
            model.power_w, model.max_clock_mhz * throttle, model.max_clock_mhz, True, n)
