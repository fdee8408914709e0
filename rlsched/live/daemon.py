"""The live scheduler's control loop: store -> cluster view -> Scheduler -> processes.

Each tick: reap attempts that ended (or died with a previous daemon), kill
cancelled and timed-out ones, build the cluster view of the live state (the
same type the simulator hands out, with telemetry from NVML or its fake), ask
the scheduler, check every placement against live telemetry (the *shield*:
the task is ready, the device healthy, its memory free counting what our
starting tasks have declared) and start the attempts. A placement the shield
refuses is logged and replaced by heft's choice.

One bad task never stops the queue: an attempt that cannot be launched (its
working directory is missing, its log cannot be written, its environment is
refused) ends failed with the reason, and the round goes on. Files under the
state directory are named by attempt id, never by job or task names.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from rlsched.live.backends import LAUNCH_FAILED, LOST, AttemptSpec, Backend, LiveDevice, open_backend
from rlsched.live.serve_lock import ServeLock
from rlsched.live.store import Store
from rlsched.pool import Device, Pool
from rlsched.schedulers import Scheduler, make_scheduler
from rlsched.table import WorkloadTable
from rlsched.view import ClusterView, DeviceTelemetry, Placement, RunningTask, TaskState

#: runtime assumed for a task with no estimate and no history
DEFAULT_ESTIMATE_S = 60.0
BACKOFF_S = (1.0, 5.0, 30.0)
#: times an attempt may be lost (process or node gone, no exit code) and run
#: again without counting against the task's retries
MAX_LOST = 3
#: exit code recorded for an attempt killed at its timeout (as GNU timeout does)
TIMED_OUT = 124


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
        self.store = store
        self.lock = lock or ServeLock(store.dir)  # first: a refused daemon touches nothing
        self.backend = backend or open_backend("local", pool_spec)
        self.scheduler: Scheduler = (make_scheduler(scheduler) if isinstance(scheduler, str)
                                     else scheduler)
        self.fallback: Scheduler = make_scheduler("heft")
        self.scheduler.reset(0)
        self.fallback.reset(0)
        self.epoch = time.time()
        self.logs = store.dir / "logs"
        self.logs.mkdir(mode=0o700, exist_ok=True)
        #: timeouts (s) of the attempts this daemon killed at their timeout, by attempt id
        self._timed_out: dict[int, float] = {}
        self._table_key: tuple = ()
        self._table: WorkloadTable | None = None
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
        self.backend.recover(self._open_attempts())

    def _refresh_devices(self) -> None:
        """The backend's live devices; the pool (view indices) follows them."""
        self.live = self.backend.devices()
        key = tuple(d.key for d in self.live)
        if key != self._pool_key:
            self._pool_key = key
            self.pool = Pool(self.backend.name, tuple(
                Device(i, d.model, d.host) for i, d in enumerate(self.live)))
            self._index = {d.key: i for i, d in enumerate(self.live)}

    def close(self) -> None:
        """Let another daemon serve the store (the backend is the caller's)."""
        self.lock.release()

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
        """One round; whether any attempt is still open (a killed one until it
        is reaped), or any task queued in a job that can still finish (not
        cancelled, no task failed)."""
        self._reap()
        self._enforce()
        self._schedule()
        row = self.store.db.execute(
            "SELECT COUNT(*) FROM tasks t JOIN jobs j ON t.job=j.id WHERE t.state='running' OR "
            "(t.state='queued' AND j.cancelled=0 AND NOT EXISTS (SELECT 1 FROM tasks f WHERE "
            "f.job=j.id AND f.state='failed'))").fetchone()
        open_attempts = self.store.db.execute(
            "SELECT COUNT(*) FROM attempts WHERE ended IS NULL").fetchone()
        return bool(row[0] or open_attempts[0])

    # ------------------------------------------------------------------ attempts
    _OPEN_ATTEMPTS = ("SELECT a.*, t.spec, t.attempts AS tries, t.state AS tstate, t.id AS tid, "
                      "t.job FROM attempts a JOIN tasks t ON a.task=t.id WHERE a.ended IS NULL")

    def _open_attempts(self):
        return self.store.db.execute(self._OPEN_ATTEMPTS).fetchall()

    def _reap(self) -> None:
        now = time.time()
        for a in self._open_attempts():
            code = self.backend.exit_code(a)
            if code is None:
                continue
            error = None
            timeout = self._timed_out.pop(a["id"], None)
            if code == 0:
                pass
            elif a["tstate"] == "cancelled":
                error = "cancelled"
            elif timeout is not None:
                code, error = TIMED_OUT, f"timed out after {timeout:g} s"
            elif code == LOST:
                error = "lost: its process (or node) went away without an exit code"
            self._close(a, code, now, error)

    def _close(self, a, code: int, now: float, error: str | None = None) -> None:
        spec = json.loads(a["spec"])
        with self.store.transaction() as db:
            db.execute("UPDATE attempts SET ended=?, exit_code=?, error=? WHERE id=?",
                       (now, code, error, a["id"]))
            if a["tstate"] != "running":  # cancelled meanwhile
                state, not_before = a["tstate"], 0.0
            elif code == 0:
                state, not_before = "done", 0.0
            elif code == LOST and self._lost(a["tid"]) <= MAX_LOST:
                # the process or its node was lost: not the task's failure
                state, not_before = "queued", now + BACKOFF_S[0]
            elif a["tries"] <= spec["retries"]:
                state = "queued"
                not_before = now + BACKOFF_S[min(a["tries"] - 1, len(BACKOFF_S) - 1)]
            else:
                state, not_before = "failed", 0.0
            db.execute("UPDATE tasks SET state=?, not_before=? WHERE id=?",
                       (state, not_before, a["tid"]))
            self.store.event("ended", a["job"], a["tid"], json.dumps({"exit": code,
                                                                       "state": state}))
        self.backend.release(a)

    def _lost(self, task: int) -> int:
        """Attempts of a task lost with their process or node."""
        return self.store.db.execute("SELECT COUNT(*) FROM attempts WHERE task=? AND "
                                     "exit_code=?", (task, LOST)).fetchone()[0]

    def _enforce(self) -> None:
        """Kill attempts of cancelled tasks and attempts past their timeout."""
        now = time.time()
        for a in self._open_attempts():
            timeout = json.loads(a["spec"]).get("timeout")
            if a["tstate"] == "cancelled":
                self.backend.kill(a)
            elif timeout and now - a["started"] > timeout:
                self._timed_out[a["id"]] = timeout
                self.backend.kill(a)

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
            key = self.live[p.device].key
            self._start(rows[p.task], key)
            self.decisions += 1
            self.placements[key] = self.placements.get(key, 0) + 1

    def _shield(self, view: ClusterView, p: Placement) -> bool:
        return p.task in view.ready and 0 <= p.device < len(view.devices) and \
            view.fits(p.task, p.device)

    def _view(self):
        self._refresh_devices()
        db = self.store.db
        active = self.store.jobs(active_only=True)
        if not active:
            return None, {}
        rows = {}
        for i in range(0, len(active), 500):  # the same jobs, whatever changed since
            names = [j.name for j in active[i:i + 500]]
            for r in db.execute("SELECT t.*, j.name AS jname, j.cancelled FROM tasks t JOIN jobs "
                                f"j ON t.job=j.id WHERE j.name IN ({','.join('?' * len(names))})",
                                names):
                rows[(r["jname"], r["task_id"])] = r
        key = tuple(j.name for j in active)
        if key != self._table_key:
            self._table_key = key
            unknown = [(j, t) for j in active for t in j.tasks if t.work is None]
            history = self.store.history() if unknown else {}  # reads every past attempt
            self._predicted = {(j.name, t.id): predict(history, j.name, t) for j, t in unknown}
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
                dev = -1 if r["device"] is None else self._index.get(r["device"], -1)
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
        samples = self.backend.sample({d.key: count[i] for i, d in enumerate(self.live)})
        devices = tuple(
            samples[d.key]._replace(index=i, memory_used=max(samples[d.key].memory_used,
                                                             reserved[i]), n_tasks=count[i])
            for i, d in enumerate(self.live))
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
        self.latest = list(devices)
        with self.store.transaction() as db:
            db.execute("DELETE FROM devices")  # a device that left is no longer listed
            for s, d in zip(devices, self.live):
                name = d.info.name if d.host == "localhost" else f"{d.host}: {d.info.name}"
                db.execute("INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           (d.key, name, d.info.uuid, s.utilization, s.memory_used,
                            s.memory_total, s.temperature_c, s.power_w, int(s.healthy),
                            s.n_tasks, now))

    def _start(self, row, device: int | None) -> None:
        spec = json.loads(row["spec"])
        attempt = row["attempts"] + 1
        job = self.store.db.execute("SELECT name FROM jobs WHERE id=?", (row["job"],)).fetchone()
        predicted = getattr(self, "_predicted", {}).get((job[0], row["task_id"]))
        # commit the attempt before its process exists: a crash in between is
        # then an attempt with no pid file, which the next daemon retries
        with self.store.transaction() as db:
            db.execute("UPDATE tasks SET state='running', device=?, attempts=? WHERE id=?",
                       (device, attempt, row["id"]))
            cur = db.execute("INSERT INTO attempts (task, device, started, predicted) "
                             "VALUES (?,?,?,?)", (row["id"], device, time.time(), predicted))
            attempt_id = cur.lastrowid
            log, exit_file = self.attempt_files(attempt_id)
            db.execute("UPDATE attempts SET log=?, exit_file=? WHERE id=?",
                       (str(log), str(exit_file), attempt_id))
        try:
            pid = self.backend.start(AttemptSpec(
                attempt_id, spec["command"] or "true", device, log, exit_file,
                dict(spec.get("env") or {}), spec.get("workdir"), spec["gpu_memory"]))
        except Exception as e:  # any launch error is this attempt's alone
            self._launch_failed(attempt_id, e)
            return
        with self.store.transaction() as db:
            db.execute("UPDATE attempts SET pid=? WHERE id=?", (pid, attempt_id))
            self.store.event("started", row["job"], row["id"],
                             json.dumps({"device": device, "pid": pid}))

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
        row = self.store.db.execute(self._OPEN_ATTEMPTS + " AND a.id=?",
                                    (attempt_id,)).fetchone()
        self._close(row, LAUNCH_FAILED, time.time(), reason)

