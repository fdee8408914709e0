"""The live scheduler's control loop: store -> cluster view -> Scheduler -> processes.

Each tick: reap attempts that ended (or died with a previous daemon), kill
cancelled and timed-out ones, build the cluster view of the live state (the
same type the simulator hands out, with telemetry from NVML or its fake), ask
the scheduler, check every placement against live telemetry (the *shield*:
the task is ready, the device healthy, its memory free counting what our
starting tasks have declared) and start the attempts. A placement the shield
refuses is logged and replaced by heft's choice.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from rlsched import executor
from rlsched.errors import InputError
from rlsched.pool import GpuModel, Pool, build_pool, identical_pool
from rlsched.schedulers import Scheduler, make_scheduler
from rlsched.sources.specs import resolve_pool
from rlsched.store import Store
from rlsched.table import WorkloadTable
from rlsched.telemetry import FakeNvml, NvmlSource
from rlsched.view import ClusterView, Placement, RunningTask, TaskState

#: runtime assumed for a task with no estimate and no history
DEFAULT_ESTIMATE_S = 60.0
BACKOFF_S = (1.0, 5.0, 30.0)


def open_pool(spec: str) -> tuple[Pool, NvmlSource, FakeNvml | None]:
    """``local`` (NVML), ``fake:N``, ``preset:NAME`` or ``file:PATH``."""
    if spec == "local":
        source = NvmlSource()
        models = [GpuModel(d.name, 1.0, 1.0, d.memory_gib, d.power_limit_w or 300.0, 30.0,
                           d.max_clock_mhz or 1500.0) for d in source.devices]
        if not models:
            raise InputError("--pool local", "NVML sees no GPU; use --pool fake:N")
        return build_pool("local", models), source, None
    if spec.startswith("fake:"):
        try:
            pool = identical_pool(int(spec[5:]), source=spec)
        except ValueError:
            raise InputError(spec, "use fake:N with N a number of GPUs") from None
    else:
        pool = resolve_pool(spec)
    fake = FakeNvml(pool)
    return pool, NvmlSource(fake), fake


def predict(history: dict[str, list[float]], job: str, task) -> float:
    """A runtime for a task without an estimate: the mean of past successful
    runs of the same job and task, else of the same command, else a default."""
    for key in (f"id:{job}/{task.id}", f"cmd:{task.command or ''}"):
        runs = history.get(key)
        if runs:
            return sum(runs) / len(runs)
    return DEFAULT_ESTIMATE_S


class Daemon:
    """One scheduler over one pool and one store.

    :param store: the durable queue
    :param pool_spec: see :func:`open_pool`
    :param scheduler: a scheduler name or ``rl:PATH``
    """

    def __init__(self, store: Store, pool_spec: str, scheduler: str) -> None:
        self.store = store
        self.pool, self.source, self.fake = open_pool(pool_spec)
        self.scheduler: Scheduler = make_scheduler(scheduler)
        self.fallback: Scheduler = make_scheduler("heft")
        self.scheduler.reset(0)
        self.fallback.reset(0)
        self.epoch = time.time()
        self.logs = store.dir / "logs"
        self.logs.mkdir(mode=0o700, exist_ok=True)
        self._table_key: tuple = ()
        self._table: WorkloadTable | None = None
        self.decisions = 0
        self.shield_fallbacks = 0
        self.placements: dict[int, int] = {}
        self.store.event("serve", detail=json.dumps({"pool": pool_spec, "scheduler": scheduler}))
        self._redeclare()

    # ------------------------------------------------------------------ loop
    def run(self, tick: float = 0.2, exit_when_idle: bool = False,
            max_seconds: float | None = None) -> None:
        start = time.time()
        while True:
            busy = self.tick()
            if exit_when_idle and not busy:
                return
            if max_seconds is not None and time.time() - start > max_seconds:
                return
            time.sleep(tick)

    def tick(self) -> bool:
        """One round; whether any task is still queued or running."""
        self._reap()
        self._enforce()
        self._schedule()
        row = self.store.db.execute(
            "SELECT COUNT(*) FROM tasks t JOIN jobs j ON t.job=j.id WHERE j.cancelled=0 AND "
            "t.state IN ('queued','running')").fetchone()
        return bool(row[0])

    # ------------------------------------------------------------------ attempts
    def _open_attempts(self):
        return self.store.db.execute(
            "SELECT a.*, t.spec, t.attempts AS tries, t.state AS tstate, t.id AS tid, t.job "
            "FROM attempts a JOIN tasks t ON a.task=t.id WHERE a.ended IS NULL").fetchall()

    def _redeclare(self) -> None:
        """After a restart, tell the fake NVML what still runs (adopted attempts)."""
        if self.fake is None:
            return
        for a in self._open_attempts():
            pid = self._pid(a)
            if a["device"] is not None and pid is not None and executor.alive(pid):
                self.fake.declare(pid, a["device"], json.loads(a["spec"])["gpu_memory"])

    def _pid(self, a) -> int | None:
        """The attempt's pid: from the store, or (if the daemon died before
        recording it) from the file the attempt's shell wrote."""
        return a["pid"] or executor.recorded_pid(Path(a["exit_file"]))

    def _reap(self) -> None:
        now = time.time()
        for a in self._open_attempts():
            code = executor.exit_code(Path(a["exit_file"]))
            pid = self._pid(a)
            if code is None and pid is not None and executor.alive(pid):
                continue
            self._close(a, -9 if code is None else code, now)

    def _close(self, a, code: int, now: float) -> None:
        spec = json.loads(a["spec"])
        if self.fake is not None and a["pid"]:
            self.fake.forget(a["pid"])
        with self.store.transaction() as db:
            db.execute("UPDATE attempts SET ended=?, exit_code=? WHERE id=?", (now, code, a["id"]))
            if a["tstate"] != "running":  # cancelled meanwhile
                state, not_before = a["tstate"], 0.0
            elif code == 0:
                state, not_before = "done", 0.0
            elif a["tries"] <= spec["retries"]:
                state = "queued"
                not_before = now + BACKOFF_S[min(a["tries"] - 1, len(BACKOFF_S) - 1)]
            else:
                state, not_before = "failed", 0.0
            db.execute("UPDATE tasks SET state=?, not_before=? WHERE id=?",
                       (state, not_before, a["tid"]))
            self.store.event("ended", a["job"], a["tid"], json.dumps({"exit": code,
                                                                       "state": state}))

    def _enforce(self) -> None:
        """Kill attempts of cancelled tasks and attempts past their timeout."""
        now = time.time()
        for a in self._open_attempts():
            timeout = json.loads(a["spec"]).get("timeout")
            pid = self._pid(a)
            if pid and (a["tstate"] == "cancelled" or (timeout and now - a["started"] > timeout)):
                executor.kill(pid)

    # ------------------------------------------------------------------ decisions
    def _schedule(self) -> None:
        for _ in range(4 * len(self.pool) + 8):  # one placement per ask, at most this many
            view, rows = self._view()
            if view is None:
                return
            placements = self.scheduler.decide(view) if view.ready else []
            checked = [p for p in placements if self._shield(view, p)]
            if len(checked) < len(placements):
                self.shield_fallbacks += 1
                self.store.event("shield", detail=json.dumps(
                    {"refused": [tuple(p) for p in placements if p not in checked]}))
                checked = [p for p in self.fallback.decide(view) if self._shield(view, p)][:1]
            if not checked:
                return
            p = checked[0]
            self._start(rows[p.task], p.device)
            self.decisions += 1
            self.placements[p.device] = self.placements.get(p.device, 0) + 1

    def _shield(self, view: ClusterView, p: Placement) -> bool:
        return p.task in view.ready and 0 <= p.device < len(view.devices) and \
            view.fits(p.task, p.device)

    def _view(self):
        db = self.store.db
        jobs = {j.name: j for j in self.store.jobs()}
        rows = {}
        for r in db.execute("SELECT t.*, j.name AS jname, j.cancelled FROM tasks t "
                            "JOIN jobs j ON t.job=j.id"):
            rows[(r["jname"], r["task_id"])] = r
        active = [j for name, j in jobs.items()
                  if any(rows[(name, t.id)]["state"] in ("queued", "running") for t in j.tasks)
                  and not any(rows[(name, t.id)]["state"] in ("failed", "cancelled")
                              for t in j.tasks)]
        if not active:
            return None, {}
        key = tuple(j.name for j in active)
        if key != self._table_key:
            self._table_key = key
            history = self.store.history()
            self._predicted = {}
            for j in active:
                for t in j.tasks:
                    if t.work is None:
                        self._predicted[(j.name, t.id)] = predict(history, j.name, t)
            self._table = WorkloadTable.from_jobs([replace(j, tasks=tuple(
                replace(t, work=t.work if t.work is not None else self._predicted[(j.name, t.id)])
                for t in j.tasks)) for j in active])
        tb = self._table
        now = time.time()
        state = bytearray(tb.n_tasks)
        by_index = {}
        for i, (jname, tid) in enumerate(tb.task_ids):
            r = rows[(jname, tid)]
            by_index[i] = r
            state[i] = {"done": TaskState.DONE, "running": TaskState.RUNNING}.get(
                r["state"], TaskState.BLOCKED)
        running, reserved, count = [], [0.0] * len(self.pool), [0] * len(self.pool)
        for i, r in by_index.items():
            if r["state"] == "running":
                started = db.execute("SELECT started FROM attempts WHERE task=? AND ended IS "
                                     "NULL", (r["id"],)).fetchone()
                start = (started[0] if started else now) - self.epoch
                dev = -1 if r["device"] is None else r["device"]
                running.append(RunningTask(i, dev, start))
                if dev >= 0:
                    reserved[dev] += tb.memory[i]
                    count[dev] += 1
        ready = []
        for i, r in by_index.items():
            if r["state"] == "queued" and now >= r["not_before"] and all(
                    state[p] == TaskState.DONE for p in tb.parents[i]):
                if tb.gpu[i]:
                    state[i] = TaskState.READY
                    ready.append(i)
                else:  # CPU-only tasks start as soon as they are ready
                    self._start(r, None)
                    state[i] = TaskState.RUNNING
        devices = tuple(
            s._replace(memory_used=max(s.memory_used, reserved[s.index]), n_tasks=count[s.index])
            for s in self.source.sample(count))
        self._publish(devices)
        job_remaining = []
        for j in range(tb.n_jobs):
            job_remaining.append(sum(tb.work[t] for t in tb.tasks_of(j)
                                     if state[t] != TaskState.DONE))
        view = ClusterView(now - self.epoch, tb, self.pool, bytes(state), tuple(ready),
                           tuple(running), devices, tuple(job_remaining), tb.n_jobs)
        return view, by_index

    def _publish(self, devices) -> None:
        """The latest sample of each device, for ``rlsched status``."""
        now = time.time()
        with self.store.transaction() as db:
            for s, info in zip(devices, self.source.devices):
                db.execute("INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           (s.index, info.name, info.uuid, s.utilization, s.memory_used,
                            s.memory_total, s.temperature_c, s.power_w, int(s.healthy),
                            s.n_tasks, now))

    def _start(self, row, device: int | None) -> None:
        spec = json.loads(row["spec"])
        attempt = row["attempts"] + 1
        job = self.store.db.execute("SELECT name FROM jobs WHERE id=?", (row["job"],)).fetchone()
        base = self.logs / f"{job[0]}.{row['task_id']}.{attempt}"
        log, exit_file = Path(f"{base}.log"), Path(f"{base}.exit")
        predicted = getattr(self, "_predicted", {}).get((job[0], row["task_id"]))
        # commit the attempt before its process exists: a crash in between is
        # then an attempt with no pid file, which the next daemon retries
        with self.store.transaction() as db:
            db.execute("UPDATE tasks SET state='running', device=?, attempts=? WHERE id=?",
                       (device, attempt, row["id"]))
            cur = db.execute("INSERT INTO attempts (task, device, started, log, exit_file, "
                             "predicted) VALUES (?,?,?,?,?,?)",
                             (row["id"], device, time.time(), str(log), str(exit_file),
                              predicted))
            attempt_id = cur.lastrowid
        launched = executor.launch(spec["command"] or "true", device, log, exit_file,
                                   spec.get("env"), spec.get("workdir"))
        with self.store.transaction() as db:
            db.execute("UPDATE attempts SET pid=? WHERE id=?", (launched.pid, attempt_id))
            self.store.event("started", row["job"], row["id"],
                             json.dumps({"device": device, "pid": launched.pid}))
        if self.fake is not None and device is not None:
            self.fake.declare(launched.pid, device, spec["gpu_memory"])

