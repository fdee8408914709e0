"""The live scheduler's control loop: store -> cluster view -> Scheduler -> processes.

Each tick: reap attempts that ended (or died with a previous daemon), kill
cancelled and timed-out ones, build the cluster view of the live state (the
same type the simulator hands out, with telemetry from NVML or its fake), ask
the scheduler, check every placement against live telemetry (the *shield*:
the task is ready, the device healthy, its memory free counting what our
starting tasks have declared; the device not drained) and start the
attempts; then publish the devices' telemetry for ``status``, busy or idle.
A placement the shield refuses is logged and replaced by heft's choice.

One bad task never stops the queue: an attempt that cannot be launched (its
working directory is missing, its log cannot be written, its environment is
refused) ends failed with the reason, and the round goes on. Files under the
state directory are named by attempt id, never by job or task names.
"""

from __future__ import annotations

import json
import math
import os
import time
from bisect import insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from rlsched.errors import InputError
from rlsched.gangs import allowed_span
from rlsched.live.backends import Backend, LiveDevice, open_backend
from rlsched.live.history import LiveBeliefs, wall_seconds
from rlsched.live.lifecycle import LAUNCH_FAILED, LOST, TIMED_OUT, AttemptSpec, TaskStatus, outcome
from rlsched.live.serve_lock import ServeLock
from rlsched.live.store import ALL_GPUS, NewAttempt, OpenAttempt, Store, StoredTask
from rlsched.live.wakeup import Wakeup
from rlsched.live.warm_start import WarmStart
from rlsched.pool import Device, GpuModel, Pool, fits_memory
from rlsched.schedulers import ORACLE, Scheduler, checked_if_slow, is_oracle, make_scheduler
from rlsched.table import JobPart, WorkloadTable
from rlsched.view import ClusterView, DeviceTelemetry, Placement, RunningTask, TaskState
from rlsched.workload import Job, Task


@dataclass(frozen=True)
class _Round:
    """What one decision round knows beside its view: the view's table, the
    stored task behind each of its indices, its workload task, and the
    CPU-only tasks ready to start."""

    table: WorkloadTable
    stored: dict[int, StoredTask]
    tasks: Sequence[Task]
    cpu_ready: tuple[int, ...]
    predicted: tuple[float, ...]  # the view's


@dataclass
class _Built:
    """The last view's makings, kept between views and rounds and brought
    up to date with the daemon's own starts and ends (:meth:`Daemon._view`).
    Its table may hold jobs that have finished since it was drawn (every
    task done, as the simulator's table holds them) until they outnumber
    those with work left."""

    version: tuple[int, int]  # the store's version when it was read
    table: WorkloadTable
    tasks: Sequence[Task]  # the workload task of each table index
    rows: list[int]  # each index's task row id
    index_of: dict[int, int]  # and back
    by_index: dict[int, StoredTask]
    state: bytearray
    running: list[RunningTask]
    reserved: list[float]
    count: list[int]
    ready: list[int]
    cpu_ready: list[int]  # CPU-only tasks ready (marked running): they start at once
    backing_off: list[int]  # queued, parents done, waiting out a retry's back-off
    beliefs_version: int  # the runtime model's, when predicted and spread were read
    predicted: tuple[float, ...]
    spread: tuple[float, ...]
    job_remaining: list[float]
    finished: set[int]  # jobs of the table whose every task is done


#: what decides while a scheduler slow to load (a learned policy) loads
WARM_FALLBACK = "share"

#: the view state of a stored status, where it is not blocked (ready is decided later)
_VIEW_STATE = {TaskStatus.DONE: TaskState.DONE, TaskStatus.RUNNING: TaskState.RUNNING}


@dataclass
class _Taken:
    """What one answer's placements accepted so far hold: their tasks, and
    the memory they declared on each view device."""

    tasks: set[int] = field(default_factory=set)
    memory: dict[int, float] = field(default_factory=dict)


class Daemon:
    """One scheduler over one pool and one store.

    :param store: the durable queue
    :param pool_spec: for the local backend: ``local`` (NVML), ``fake:N``,
        ``preset:NAME`` or ``file:PATH``
    :param scheduler: a scheduler name or ``rl:PATH``, or a Scheduler
    :param backend: where attempts run (default: the local one on ``pool_spec``)
    :param lock: the store's serve lock, where the caller took it before
        opening the backend (default: taken here, first of all)
    :raises InputError: another daemon serves this store
    """

    def __init__(self, store: Store, pool_spec: str, scheduler: str | Scheduler,
                 backend: Backend | None = None, lock: ServeLock | None = None) -> None:
        self.refuse_bounds(scheduler)
        self.store = store
        self.lock = lock or ServeLock(store.dir)  # first: a refused daemon touches nothing
        self.backend = backend or open_backend("local", pool_spec)
        self.scheduler: Scheduler = (self._warm_start(scheduler) if isinstance(scheduler, str)
                                     else scheduler)

        self.fallback: Scheduler = make_scheduler("heft")
        self.scheduler.reset(0)
        self.fallback.reset(0)
        self.epoch = time.time()
        self.logs = store.dir / "logs"
        self.logs.mkdir(mode=0o700, exist_ok=True)
        #: timeouts (s) of the attempts this daemon killed at their timeout, by attempt id
        self._timed_out: dict[int, float] = {}
        #: the device keys drained this round (ALL_GPUS: every device)
        self._drained: set[int] = set()
        #: ``(attempt id, device key)`` where NVML saw an attempt's process on
        #: a GPU it was not given
        self.misplaced: set[tuple[int, int]] = set()
        self._table_key: tuple = ()
        self._table_jobs: list[Job] = []  # (keeps the jobs of the key alive)
        #: each active job's part of the table, by the store's parsed job (kept with it)
        self._parts: dict[int, tuple[Job, JobPart]] = {}
        self._table: WorkloadTable | None = None
        self._table_tasks: list[Task] = []  # the workload task of each table index
        #: the runtime model of the store's history: every view's predictions
        self.beliefs = LiveBeliefs()
        #: the store's ended attempts of the active jobs, read once a round
        self._round_ended: tuple[dict[str, float], dict[int, float]] | None = None
        #: what the last view was built from (see :meth:`_view`), and the task
        #: rows this daemon changed since (a start's launch time; None: an end)
        self._built: _Built | None = None
        self._touched: dict[int, float | None] = {}
        self.decisions = 0
        self.shield_fallbacks = 0
        self.placements: dict[int, int] = {}
        #: the live devices of the last round and their latest samples
        self.live: list[LiveDevice] = []
        self.latest: list[DeviceTelemetry] = []
        self._pool_key: tuple = ()
        self.pool: Pool = Pool("none", ())
        self._refresh_devices()
        self.store.event("serve", detail=json.dumps({
            "backend": self.backend.name, "pool": pool_spec,
            "scheduler": scheduler if isinstance(scheduler, str) else scheduler.name}))
        self.backend.recover([a.ref for a in self.store.open_attempts()])

    def _warm_start(self, spec: str) -> Scheduler:
        """The scheduler ``spec`` names; one slow to load (``rl:PATH``) is
        checked now, then loaded in the background while ``share`` decides
        (:mod:`rlsched.live.warm_start`)."""
        if not checked_if_slow(spec):
            return make_scheduler(spec)

        def ready(loaded: Scheduler, seconds: float, meanwhile: int) -> None:
            self.store.event("scheduler_ready", detail=json.dumps({
                "scheduler": spec, "load_s": round(seconds, 3), "fallback": WARM_FALLBACK,
                "fallback_decisions": meanwhile}))

        return WarmStart(spec, partial(make_scheduler, spec), make_scheduler(WARM_FALLBACK), ready)

    @staticmethod
    def refuse_bounds(scheduler: str | Scheduler) -> None:
        """Raise :class:`InputError` for ``oracle:NAME``: a bound reads true
        runtimes, which no live pool knows."""
        name = scheduler if isinstance(scheduler, str) else scheduler.name
        if name.startswith(ORACLE) or not isinstance(scheduler, str) and is_oracle(scheduler):
            raise InputError("--scheduler", f"{name} is a bound that reads true runtimes, "
                             "which a live pool never knows; serve the heuristic itself")

    def _refresh_devices(self) -> None:
        """The backend's live devices; the pool (view indices) follows them."""
        self.live = self.backend.devices()
        key = tuple(d.key for d in self.live)
        if key != self._pool_key:
            self._pool_key = key
            self.pool = Pool(self.backend.name, tuple(
                Device(i, d.model, d.host) for i, d in enumerate(self.live)))
            self._index = {d.key: i for i, d in enumerate(self.live)}
            self._built = None  # (the running tasks' view devices moved)

    def close(self) -> None:
        """Let another daemon serve the store (the backend is the caller's)."""
        self.lock.release()

    # ------------------------------------------------------------------ loop
    def run(self, tick: float = 0.2, exit_when_idle: bool = False,
            max_seconds: float | None = None) -> None:
        """Round after round, waiting up to ``tick`` seconds between them: a
        task's exit or a change to the queue ends the wait at once (see
        :mod:`rlsched.live.wakeup`), the tick bounds it for everything else."""
        start = time.time()
        wakeup = Wakeup(self.store.dir)
        try:
            while True:
                busy = self.tick()
                if exit_when_idle and (not busy or self._stranded()):
                    break
                if max_seconds is not None and time.time() - start > max_seconds:
                    break
                wakeup.wait(tick)
        finally:
            wakeup.close()
            if isinstance(self.scheduler, WarmStart):
                # a policy still loading (importing torch) in its thread when the
                # interpreter exits can abort it ("terminate called without an
                # active exception"): the load ends first
                self.scheduler.wait(120)
        if isinstance(self.scheduler, WarmStart):
            self.scheduler.poll()  # a load that failed is an error even if the fallback did all

    def _stranded(self) -> bool:
        """Whether nothing runs and every task that could start never can on
        this pool (``--exit-when-idle`` would otherwise wait for ever):
        raises :class:`InputError` naming them. Only where the devices are
        fixed: a cluster's next node may take the task."""
        fixed = self.backend.fixed_devices and self.pool.devices
        stranded = self.store.stranded(self.pool) if fixed else []
        if not stranded:
            return False
        name, why = stranded[0]
        more = f" (and {len(stranded) - 1} more)" if len(stranded) > 1 else ""
        raise InputError(str(self.store.dir), f"task {name}{more} can never start on this pool, "
                         f"and nothing else can run: {why.removeprefix('unschedulable: ')}; "
                         "cancel its job, or serve a pool that has room for it")

    def tick(self) -> bool:
        """One round; whether any attempt is still open (a killed one until it
        is reaped), or any task queued in a job that can still finish (not
        cancelled, no task failed)."""
        if isinstance(self.scheduler, WarmStart):
            self.scheduler.poll()
        self._refresh_devices()
        self._reap()
        self.beliefs.learn(self.store, self._speed)
        self._round_ended = None  # attempts ended this round: read again once
        self._enforce()
        self._drained = self.store.drained()
        self._schedule()
        running = self.store.open_attempts()  # once, for both: the round's starts included
        self._publish(running)
        self._check_placements(running)
        return self.store.has_work()

    # ------------------------------------------------------------------ attempts
    def _reap(self) -> None:
        """End the attempts whose process ended, in one transaction (a
        round may end dozens: one commit, not one each), then release
        their devices."""
        now = time.time()
        ended = []
        for a in self.store.open_attempts():
            code = self.backend.exit_code(a.ref)
            if code is None:
                continue
            error = None
            timeout = self._timed_out.get(a.ref.id)
            if code == 0:
                pass
            elif a.task_status == TaskStatus.CANCELLED:
                error = "cancelled"
            elif timeout is not None:
                code, error = TIMED_OUT, f"timed out after {timeout:g} s"
            elif code == LOST:
                error = "lost: its process (or node) went away without an exit code"
            ended.append((a, code, error))
        if not ended:
            return
        with self.store.batch():
            for a, code, error in ended:
                self._record_end(a, code, now, error)
        for a, _, _ in ended:
            self._touched[a.task] = None
            self._timed_out.pop(a.ref.id, None)
            self.backend.release(a.ref)

    def _close(self, a: OpenAttempt, code: int, now: float, error: str | None = None) -> None:
        """End attempt ``a`` and release its devices."""
        self._record_end(a, code, now, error)
        self.backend.release(a.ref)

    def _record_end(self, a: OpenAttempt, code: int, now: float, error: str | None) -> None:
        """Store how ``a`` ended and what its task becomes (its lost
        attempts are counted only where this one was lost: only then do
        they matter)."""
        lost = self.store.lost_attempts(a.task, LOST) + 1 if code == LOST else 0
        status, not_before = outcome(code, a.task_status, a.tries, a.retries, lost, now,
                                     job_failed=code != 0 and self.store.job_failed(a.job))
        self.store.end_attempt(a, code, now, error, status, not_before)

    def _enforce(self) -> None:
        """Kill attempts of cancelled tasks and attempts past their timeout."""
        now = time.time()
        for a in self.store.open_attempts():
            if a.task_status == TaskStatus.CANCELLED:
                self.backend.kill(a.ref)
            elif a.timeout and now - a.started > a.timeout:
                self._timed_out[a.ref.id] = a.timeout
                self.backend.kill(a.ref)

    # ------------------------------------------------------------------ decisions
    def _schedule(self) -> None:
        """Ask the scheduler, start what it placed, and ask again on the new
        state, until it places nothing. Every placement of one answer starts,
        as the simulator applies them all, each checked by the shield against
        the view less what the answer's earlier placements took."""
        for _ in range(4 * len(self.pool) + 8):  # at most this many asks a round
            built = self._view()
            if built is None:
                return
            view, round_ = built
            # CPU-only tasks start as soon as they are ready
            self._start(round_, [(i, None) for i in round_.cpu_ready])
            placements = self.scheduler.decide(view) if view.ready else []
            taken = _Taken()
            checked = [p for p in placements if self._shield(view, p, taken)]
            if len(checked) < len(placements):
                self.shield_fallbacks += 1
                self.store.event("shield", detail=json.dumps(
                    {"refused": [tuple(p) for p in placements if p not in checked]}))
                checked += [p for p in self.fallback.decide(view)
                            if self._shield(view, p, taken)][:1]
            if not checked:
                return
            starts: list[tuple[int, list[int] | None]] = []
            for p in checked:
                keys = [self.live[d].key for d in p.devices]
                # counted first: the metrics thread, reading between the two, must
                # never see the task running and the decision not yet made
                self.decisions += 1
                for key in keys:
                    self.placements[key] = self.placements.get(key, 0) + 1
                starts.append((p.task, keys))
            launched = self._start(round_, starts)
            if launched and len(checked) == len(placements) and \
                    not self._more_possible(view, taken):
                return  # asked again, it could place nothing

    def _more_possible(self, view: ClusterView, taken: _Taken) -> bool:
        """Whether asking again, on the view less what this answer
        started (``taken``), could place anything: a ready task left that
        fits a device open to it, as :class:`rlsched.sim.Simulator` asks
        again after an answer (an idle device for a scheduler that places
        only on idle ones, any device for one that shares). A ready gang
        left counts as placeable. Nothing else is read within a round (an
        exit is reaped at the next one, which a submission or an exit
        starts at once, and a retry's back-off ends within a tick), so
        where this is false, asking again would place nothing and cost a
        view and a decision."""
        left = [t for t in view.ready if t not in taken.tasks]
        if not left:
            return False
        gpus, memory = view.table.gpus, view.table.memory
        if any(gpus[t] > 1 for t in left):
            return True
        idle_only = self.scheduler.idle_only
        open_ = [(d, dev.memory_free - taken.memory.get(d, 0.0))
                 for d, dev in enumerate(view.devices)
                 if dev.healthy and not (idle_only and (dev.n_tasks or d in taken.memory))]
        if not open_:
            return False
        if not view.constrained:  # fits_memory grows with the room: the least need, the most room
            return fits_memory(min(memory[t] for t in left), max(free for _, free in open_))
        return any(fits_memory(memory[t], free) and view.may_use(t, d)
                   for d, free in open_ for t in left)

    def _shield(self, view: ClusterView, p: Placement, taken: _Taken) -> bool:
        """Whether ``p`` may start now: its task ready and not yet placed by
        this answer, and every device it names (a gang's all, distinct, as
        many as it takes, on one host) healthy, with its memory free less
        what the answer's earlier placements took, and allowed to it. An
        accepted placement is added to ``taken``."""
        devices = p.devices
        ok = p.task in view.ready and p.task not in taken.tasks \
            and view.gpus(p.task) == len(devices) == len(set(devices)) \
            and all(0 <= d < len(view.devices) and view.fits(p.task, d) and fits_memory(
                view.table.memory[p.task] + taken.memory.get(d, 0.0), view.devices[d].memory_free)
                for d in devices) \
            and allowed_span(view.pool, devices)
        if ok:
            taken.tasks.add(p.task)
            for d in devices:
                taken.memory[d] = taken.memory.get(d, 0.0) + view.table.memory[p.task]
        return ok

    # ------------------------------------------------------------------ the view
    def _view(self) -> tuple[ClusterView, _Round] | None:
        """The cluster view of the live state, or None when no job has work
        left: the last view brought up to date with this daemon's own starts
        and ends where that can be done (:meth:`_apply`), else read afresh
        from the store (:meth:`_view_fresh`)."""
        kept, self._built = self._built, None  # (dropped if anything below fails)
        if kept is not None:
            touched, self._touched = self._touched, {}
            if self._apply(kept, touched):
                self._built = kept
                if len(kept.finished) == kept.table.n_jobs:
                    return None  # (every job finished: none has work left)
                return self._assemble(kept, time.time())
        self._touched = {}
        return self._view_fresh()

    def _view_fresh(self) -> tuple[ClusterView, _Round] | None:
        """The view read from the store: every active job's tasks."""
        version = self.store.version()  # (first: a change after it is seen next view)
        active = self.store.jobs(active_only=True)
        if not active:
            return None
        stored = self.store.active_tasks([j.name for j in active])
        tb = self._workload_table(active)
        now = time.time()
        by_index = dict(enumerate(map(stored.__getitem__, tb.task_ids)))
        state = self._states(tb, by_index)
        running, reserved, count = self._reservations(tb, by_index, now)
        ready, cpu_ready, backing_off = self._ready(tb, by_index, state, now)
        ready.sort(key=self._ready_since(tb, by_index))
        rows = [by_index[i].id for i in range(tb.n_tasks)]
        predicted, spread = self.beliefs.of(tb, rows, state)
        job_remaining = [sum(predicted[t] for t in tb.tasks_of(j) if state[t] != TaskState.DONE)
                         for j in range(tb.n_jobs)]
        self._built = _Built(version, tb, self._table_tasks, rows,
                             {r: i for i, r in enumerate(rows)}, by_index,
                             state, running, reserved, count, ready, cpu_ready, backing_off,
                             self.beliefs.model.version, predicted, spread, job_remaining, set())
        return self._assemble(self._built, now)

    def _apply(self, built: _Built, touched: dict[int, float | None]) -> bool:
        """Bring ``built`` up to date with the task rows this daemon changed
        (``touched``: each row id, and its start's launch time or None), in
        place, with no pass over every task: each one's row, state, running
        entries and devices; the tasks that become ready (its children, where
        it ended; itself, where it is queued again; any whose retry's
        back-off has ended), each in its place in the ready order; its job's
        remaining work; the beliefs. False where it cannot be done: the store
        changed otherwise (another process, or another change through the
        daemon's own store object), a row is not kept, a start has no
        launch time, or the table holds more finished jobs than jobs with
        work left (then the view is read afresh, with a table of those)."""
        if self.store.version() != built.version:
            return False
        changed = []
        for row_id, at in touched.items():
            i = built.index_of.get(row_id)
            row = self.store.kept_row(row_id) if i is not None else None
            if i is None or row is None or (row.status == TaskStatus.RUNNING and at is None):
                return False
            changed.append((i, row, at))
        self._unplace(built, {i for i, _, _ in changed})
        done, candidates = self._replace_rows(built, changed)
        self._ready_again(built, candidates, time.time())
        self._believe(built, done)
        return 2 * len(built.finished) <= built.table.n_jobs + 64  # (else the jobs left's table)

    @staticmethod
    def _unplace(built: _Built, leaving: set[int]) -> None:
        """Take the tasks ``leaving`` (about to take their new rows) out of
        the ready tasks, the back-offs and the running tasks."""
        state = built.state
        if any(state[i] == TaskState.READY for i in leaving):
            built.ready = [t for t in built.ready if t not in leaving]
        built.backing_off = [t for t in built.backing_off if t not in leaving]
        built.cpu_ready = [t for t in built.cpu_ready if t not in leaving]
        if any(built.by_index[i].status == TaskStatus.RUNNING for i in leaving):
            built.running = [r for r in built.running if r.task not in leaving]

    def _replace_rows(self, built: _Built, changed: list[tuple[int, StoredTask, float | None]]
                      ) -> tuple[list[int], list[int]]:
        """Give each changed task its new row and state (and running entries,
        at its launch time); the tasks now done, and those that may have
        become ready (a done task's children; a task queued again)."""
        tb = built.table
        done: list[int] = []
        candidates: list[int] = []
        for i, row, at in changed:
            built.by_index[i] = row
            built.state[i] = _VIEW_STATE.get(row.status, TaskState.BLOCKED)
            if row.status == TaskStatus.RUNNING and at is not None:
                self._add_running(built.running, i, row, at - self.epoch)
            elif row.status == TaskStatus.DONE:
                done.append(i)
                candidates += tb.children[i]
            elif row.status == TaskStatus.QUEUED:
                candidates.append(i)  # (an attempt ended: its retry waits out a back-off)
        built.running.sort(key=lambda r: r.task)  # (stable: a gang's entries keep their order)
        built.reserved, built.count = self._device_load(tb, built.running)
        return done, candidates

    def _ready_again(self, built: _Built, candidates: list[int], now: float) -> None:
        """Of ``candidates`` and the tasks backing off, mark ready (in their
        place in the ready order) those queued with every parent done and
        no back-off left; CPU-only ones are marked running, to start."""
        tb, by_index, state = built.table, built.by_index, built.state
        queued, blocked, done, parents = (TaskStatus.QUEUED, TaskState.BLOCKED, TaskState.DONE,
                                          tb.parents)
        waiting = [t for t in dict.fromkeys(candidates)
                   if by_index[t].status is queued and state[t] == blocked
                   and all(state[p] == done for p in parents[t])]
        since = self._ready_since(tb, by_index)
        backing_off = []
        for t in sorted({*built.backing_off, *waiting}):
            if now < by_index[t].not_before:
                backing_off.append(t)
            elif tb.gpu[t]:
                state[t] = TaskState.READY
                insort(built.ready, t, key=since)
            else:
                state[t] = TaskState.RUNNING
                built.cpu_ready.append(t)
        built.backing_off = backing_off

    def _believe(self, built: _Built, done: list[int]) -> None:
        """The beliefs, where tasks finished or the runtime model learnt;
        the remaining work of the jobs they moved; the jobs now finished."""
        tb, state, version = built.table, built.state, self.beliefs.model.version
        if not done and version == built.beliefs_version:
            return
        built.predicted, built.spread = self.beliefs.of(tb, built.rows, state)
        moved = sorted({tb.job_of[i] for i in done})  # the jobs whose tasks finished
        jobs: Iterable[int] = range(tb.n_jobs) if version != built.beliefs_version else moved
        built.beliefs_version = version
        for j in jobs:
            built.job_remaining[j] = sum(built.predicted[t] for t in tb.tasks_of(j)
                                         if state[t] != TaskState.DONE)
        for j in moved:
            if all(state[t] == TaskState.DONE for t in tb.tasks_of(j)):
                built.finished.add(j)

    def _assemble(self, built: _Built, now: float) -> tuple[ClusterView, _Round]:
        """The view of ``built`` at wall time ``now``: the devices sampled
        now, and each job's service so far."""
        tb, running, view_time = built.table, built.running, now - self.epoch
        devices = self._telemetry(built.count, built.reserved)
        if self._drained:  # a drained device is out of the running: nothing new starts there
            devices = tuple(d._replace(healthy=False) if ALL_GPUS in self._drained or
                            self.live[i].key in self._drained else d
                            for i, d in enumerate(devices))
        service = self._ended(tb)[0]
        attained = [service.get(j.name, 0.0) for j in tb.jobs]
        for r in running:
            if r.device >= 0:
                attained[tb.job_of[r.task]] += max(view_time - r.start, 0.0)
        view = ClusterView(view_time, tb, self.pool, bytes(built.state), tuple(built.ready),
                           tuple(running), devices, tuple(built.job_remaining), tb.n_jobs,
                           built.predicted, built.spread, tuple(attained),
                           known_kinds=self.beliefs.model.known_keys)
        return view, _Round(tb, built.by_index, built.tasks, tuple(built.cpu_ready),
                            built.predicted)

    def _workload_table(self, active: list[Job]) -> WorkloadTable:
        """The table of the active jobs, rebuilt only when they change."""
        # the store's parsed jobs (one object per stored job, kept by the store
        # and here): a job purged and submitted again under its name is another
        key = tuple(map(id, active))
        if key != self._table_key or self._table is None:
            self._table_key, self._table_jobs = key, active
            # each job's part of the table, kept while it is active (the
            # store keeps the parsed job): as jobs finish and arrive, only
            # the new ones are worked out, and the table is assembled
            kept, self._parts = self._parts, {}
            parts = []
            for j in active:
                hit = kept.get(id(j))
                if hit is None or hit[0] is not j:
                    # arrivals in the view's time, seconds since this daemon's epoch
                    hit = j, JobPart.of(replace(j, arrival=j.arrival - self.epoch))
                self._parts[id(j)] = hit
                parts.append(hit[1])
            self._table = WorkloadTable.from_parts(parts)[0]
            # each index's workload task, kept with the table it indexes
            specs = {(j.name, t.id): t for j in active for t in j.tasks}
            self._table_tasks = [specs[key] for key in self._table.task_ids]
        return self._table

    def _model_of(self, device: int | None) -> GpuModel | None:
        """The model of a live device by key (None: a CPU task, or a device
        this pool no longer has)."""
        index = self._index.get(device) if device is not None else None
        return None if index is None else self.pool.devices[index].model

    def _speed(self, device: int | None, kind: str) -> float:
        """Nominal speed of a live device (by key) for a task kind; 1.0 for
        one this pool no longer has."""
        model = self._model_of(device)
        return 1.0 if model is None else model.speed(kind)

    @staticmethod
    def _states(tb: WorkloadTable, by_index: dict[int, StoredTask]) -> bytearray:
        """Each task's view state from its stored status (ready is decided later)."""
        state = bytearray(tb.n_tasks)
        of = _VIEW_STATE.get
        for i, task in by_index.items():
            state[i] = of(task.status, TaskState.BLOCKED)
        return state

    def _reservations(self, tb: WorkloadTable, by_index: dict[int, StoredTask], now: float
                      ) -> tuple[list[RunningTask], list[float], list[int]]:
        """The running tasks, and per view device the memory they declared and their number."""
        running: list[RunningTask] = []
        starts = self.store.open_attempt_starts()
        for i, task in by_index.items():
            if task.status == TaskStatus.RUNNING:
                self._add_running(running, i, task, starts.get(task.id, now) - self.epoch)
        return (running, *self._device_load(tb, running))

    def _add_running(self, running: list[RunningTask], i: int, task: StoredTask,
                     start: float) -> None:
        """Add running task ``i`` (its row ``task``), started at view time ``start``."""
        if task.device is None:
            running.append(RunningTask(i, -1, start))
            return
        for key in (task.device, *task.gang):  # a gang once per device, as in the sim
            running.append(RunningTask(i, self._index.get(key, -1), start))

    def _device_load(self, tb: WorkloadTable, running: list[RunningTask]
                     ) -> tuple[list[float], list[int]]:
        """Per view device, the memory ``running`` declared there and their
        number: summed in the running tasks' order, so the same floats
        however the list was come to (a kept view's, by additions and
        removals, would drift from a fresh one's by rounding)."""
        reserved, count = [0.0] * len(self.pool), [0] * len(self.pool)
        memory = tb.memory
        for r in running:
            if r.device >= 0:
                reserved[r.device] += memory[r.task]
                count[r.device] += 1
        return reserved, count

    def _ended(self, tb: WorkloadTable) -> tuple[dict[str, float], dict[int, float]]:
        """:meth:`Store.ended_attempts` of the table's jobs, read once a
        round (no attempt ends within one)."""
        if self._round_ended is None:
            self._round_ended = self.store.ended_attempts([j.name for j in tb.jobs])
        return self._round_ended

    def _ready_since(self, tb: WorkloadTable, by_index: dict[int, StoredTask]
                     ) -> Callable[[int], tuple[float, int]]:
        """A sort key putting ready tasks in the order they became ready, as
        the simulator keeps them: when its job arrived, its last parent
        ended, its own last attempt ended (a retry) or its back-off ended,
        whichever was last; ties by table index."""
        ended = self._ended(tb)[1]
        epoch = self.epoch

        def since(i: int) -> tuple[float, int]:
            task = by_index[i]
            times = [tb.jobs[tb.job_of[i]].arrival, task.not_before - epoch,
                     ended.get(task.id, -math.inf) - epoch]
            times += [ended.get(by_index[p].id, -math.inf) - epoch for p in tb.parents[i]]
            return max(times), i
        return since

    @staticmethod
    def _ready(tb: WorkloadTable, by_index: dict[int, StoredTask], state: bytearray,
               now: float) -> tuple[list[int], list[int], list[int]]:
        """The GPU tasks ready to place (marked ready in ``state``), the
        CPU-only tasks ready to start (marked running: they start this round)
        and the tasks that would be ready but for a retry's back-off."""
        ready, cpu_ready, backing_off = [], [], []
        queued, done, parents = TaskStatus.QUEUED, TaskState.DONE, tb.parents
        for i, task in by_index.items():
            if task.status is queued and all(state[p] == done for p in parents[i]):
                if now < task.not_before:
                    backing_off.append(i)
                elif tb.gpu[i]:
                    state[i] = TaskState.READY
                    ready.append(i)
                else:
                    state[i] = TaskState.RUNNING
                    cpu_ready.append(i)
        return ready, cpu_ready, backing_off

    def _telemetry(self, count: list[int], reserved: list[float]) -> tuple[DeviceTelemetry, ...]:
        """A sample of each live device, by view index, its memory used at
        least what our running tasks declared there."""
        samples = self.backend.sample({d.key: count[i] for i, d in enumerate(self.live)})
        devices = tuple(
            samples[d.key]._replace(index=i, memory_used=max(samples[d.key].memory_used,
                                                             reserved[i]), n_tasks=count[i])
            for i, d in enumerate(self.live))
        self.latest = list(devices)
        return devices

    def _publish(self, running: list[OpenAttempt]) -> None:
        """The devices' latest sample, for ``rlsched status``: once a round,
        idle or not, so that what it shows is never older than a round."""
        count, reserved = [0] * len(self.pool), [0.0] * len(self.pool)
        for a in running:
            for key in a.ref.devices:
                dev = self._index.get(key, -1)
                if dev >= 0:
                    count[dev] += 1
                    reserved[dev] += a.ref.gpu_memory
        devices = self._telemetry(count, reserved)
        self.store.publish_devices(
            (d.key, d.info.name if d.host == "localhost" else f"{d.host}: {d.info.name}",
             d.info.uuid, s.utilization, s.memory_used, s.memory_total, s.temperature_c,
             s.power_w, int(s.healthy), s.n_tasks, d.model.name)
            for s, d in zip(devices, self.live))

    def _check_placements(self, running: list[OpenAttempt]) -> None:
        """Compare NVML's process list with the placements: a process of an
        attempt's group (the attempt runs in a session of its own) on a GPU
        other than the one it was given is recorded once, for ``status`` and
        the metrics. A user's code that ignores CUDA_VISIBLE_DEVICES, or a
        wrong device order, shows up here."""
        seen = self.backend.processes()
        if not seen:
            return
        groups = {a.ref.pid: a for a in running
                  if a.ref.pid and a.ref.device is not None}
        for device, pids in seen.items():
            for pid in pids:
                try:
                    attempt = groups.get(os.getpgid(pid))
                except OSError:  # gone, or another machine's pid namespace
                    continue
                if attempt is None or device in attempt.ref.devices:
                    continue
                if (attempt.ref.id, device) not in self.misplaced:
                    self.misplaced.add((attempt.ref.id, device))
                    self.store.record_misplaced(attempt, device, pid)

    # ------------------------------------------------------------------ starting attempts
    def _start(self, round_: _Round, starts: list[tuple[int, list[int] | None]]) -> bool:
        """Start each ``(task index, device keys)`` of ``starts`` (keys None:
        a CPU task). Their attempts are committed together before any process
        starts (a crash in between leaves attempts the next daemon retries),
        then launched one after another, then recorded together, each with
        the time its process was launched: a round that starts 64 tasks pays
        for two commits, not 128. A gang's first device, the one stored as
        the attempt's, is its slowest member, which paces it: the speed its
        runtime is learnt at. Whether every one was launched (one that was
        not leaves its devices free again)."""
        if not starts:
            return True
        tb = round_.table
        new, specs = [], []
        for index, keys in starts:
            kind = "memory" if tb.kind[index] == 1 else "compute"
            members = sorted(keys, key=lambda k: (self._speed(k, kind), k)) if keys else []
            device, gang = (members[0], tuple(members[1:])) if members else (None, ())
            predicted = wall_seconds(round_.predicted[index], tb.kind[index],
                                     self._model_of(device))
            new.append(NewAttempt(round_.stored[index], device, predicted, gang,
                                  self.beliefs.source(tb, index)))
            specs.append(round_.tasks[index])
        launched = []
        for a, spec, (attempt, log, exit_file) in zip(
                new, specs, self.store.start_attempts(new, self.attempt_files)):
            at = time.time()
            try:
                pid = self.backend.start(AttemptSpec(
                    attempt, spec.command or "true", a.device, log, exit_file, dict(spec.env),
                    spec.workdir, spec.gpu_memory, a.gang))
            except Exception as e:  # any launch error is this attempt's alone
                self._launch_failed(attempt, e)
                self._built = None  # (its task's row changed again: the next view is read afresh)
                continue
            launched.append((attempt, a.task, a.device, pid, at))
        self.store.attempts_started(launched)
        for _, task, _, _, at in launched:
            self._touched[task.id] = at
        return len(launched) == len(starts)

    def attempt_files(self, attempt_id: int) -> tuple[Path, Path]:
        """An attempt's log and exit-code file: named by its id, never by job
        or task names, so no name can reach outside the state directory."""
        base = self.logs / f"attempt-{attempt_id}"
        return Path(f"{base}.log"), Path(f"{base}.exit")

    def _launch_failed(self, attempt_id: int, error: Exception) -> None:
        """End an attempt that could not be launched as failed (retries still
        apply), with the reason for ``status``; the round goes on."""
        reason = f"could not start: {type(error).__name__}: {error}"
        log, _ = self.attempt_files(attempt_id)
        try:  # where the log can be written, `rlsched logs` shows the reason too
            with open(log, "ab") as fh:
                fh.write(f"rlsched: {reason}\n".encode())
        except OSError:
            pass
        self.store.event("launch_failed", detail=json.dumps({"attempt": attempt_id,
                                                              "error": reason}))
        (attempt,) = self.store.open_attempts(attempt_id)
        self._close(attempt, LAUNCH_FAILED, time.time(), reason)
