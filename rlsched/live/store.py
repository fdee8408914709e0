"""The durable queue of the live scheduler: SQLite in WAL mode.

Jobs, tasks, attempts and events live in one database under the state
directory (mode 0700; the database 0600). Every state change is one
transaction, so a crash loses nothing that was acknowledged, and
``rlsched submit`` works whether or not the daemon runs: the daemon reads new
work from the same file.

Task states are :class:`~rlsched.live.lifecycle.TaskStatus`. A job's state follows from its tasks:
cancelled if cancelled, failed if a task failed, done when all are done,
running while any runs, else queued. This module is the only one that speaks
SQL: the daemon, the command line and the benchmarks call its named methods.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rlsched.errors import InputError
from rlsched.live.lifecycle import AttemptRef, TaskStatus
from rlsched.live.serve_lock import serve_holder
from rlsched.pool import Device, GpuModel, Pool, fits_memory
from rlsched.workload import Instance, Job, Task, check_name, placement_allows


@dataclass(frozen=True)
class OpenAttempt:
    """An attempt not yet ended, with what the control loop decides it by.

    :param ref: the backend's handle on it
    :param task: the task's row id, and ``job`` its job's
    :param task_status: the task's state now (``CANCELLED`` if cancelled meanwhile)
    :param tries: attempts of the task so far, this one included
    :param retries: attempts allowed after a failure
    :param timeout: seconds after which it is killed, or None
    :param started: wall-clock time it started
    """

    ref: AttemptRef
    task: int
    job: int
    task_status: TaskStatus
    tries: int
    retries: int
    timeout: float | None
    started: float


@dataclass(frozen=True)
class StoredTask:
    """A task of a job the control loop still schedules, as stored now.

    :param id: the task's row id (``job`` its job's, ``job_name`` its name)
    :param task_id: its id within the job
    :param status: its state
    :param device: the device key of its latest attempt (a gang's slowest member)
    :param attempts: attempts so far
    :param not_before: wall-clock time before which it may not start (back-off)
    :param gang: a gang's other device keys, of its latest attempt
    """

    id: int
    job: int
    job_name: str
    task_id: str
    status: TaskStatus
    device: int | None
    attempts: int
    not_before: float
    gang: tuple[int, ...] = ()


@dataclass(frozen=True)
class NewAttempt:
    """An attempt about to start: ``task`` on ``device`` (a gang's other
    devices in ``gang``), its runtime ``predicted`` from ``predicted_from``."""

    task: StoredTask
    device: int | None
    predicted: float | None
    gang: tuple[int, ...] = ()
    predicted_from: str | None = None

#: The database's layout (``PRAGMA user_version``). 1: the first release (it
#: left user_version at 0); 2: ``attempts.error``, why an attempt failed the
#: way it did; 3: ``tasks.reason``, why a task was skipped. Older databases are
#: upgraded in place; a newer one is refused. 4: ``devices.model``, the
#: model name serve placed by (for placement rules checked at submit). 5:
#: ``attempts.gang`` and ``tasks.gang``, the other device keys of a task of
#: several GPUs, comma-separated (NULL for one GPU or none). 6:
#: ``attempts.predicted_from``, what the attempt's prediction rested on
#: (:meth:`rlsched.runtime_model.RuntimeModel.source`).
SCHEMA_VERSION = 6

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, priority REAL NOT NULL,
    deadline REAL, submitted REAL NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY, job INTEGER NOT NULL REFERENCES jobs(id), task_id TEXT NOT NULL,
    position INTEGER NOT NULL, state TEXT NOT NULL, device INTEGER, spec TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0, reason TEXT,
    gang TEXT, UNIQUE (job, task_id));
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, task INTEGER NOT NULL REFERENCES tasks(id), device INTEGER,
    pid INTEGER, started REAL NOT NULL, ended REAL, exit_code INTEGER, log TEXT,
    exit_file TEXT, predicted REAL, error TEXT, gang TEXT, predicted_from TEXT);
CREATE TABLE IF NOT EXISTS devices (
    idx INTEGER PRIMARY KEY, name TEXT, uuid TEXT, utilization REAL, memory_used REAL,
    memory_total REAL, temperature_c REAL, power_w REAL, healthy INTEGER, tasks INTEGER,
    updated REAL, model TEXT);
CREATE INDEX IF NOT EXISTS tasks_by_state_job ON tasks (state, job);
DROP INDEX IF EXISTS tasks_by_state;
CREATE INDEX IF NOT EXISTS open_attempts ON attempts (ended);
CREATE INDEX IF NOT EXISTS attempts_by_task ON attempts (task);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, job INTEGER, task INTEGER,
    kind TEXT NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS drains (gpu INTEGER PRIMARY KEY, since REAL NOT NULL);
"""

#: ``drains.gpu`` of a drain of the whole pool
ALL_GPUS = -1


#: The one "can still finish" rule: job ``j`` is not cancelled and none of its
#: tasks failed or was cancelled (a SQL condition on a ``jobs`` row named ``j``).
CAN_FINISH = """j.cancelled=0 AND NOT EXISTS (SELECT 1 FROM tasks f WHERE f.job=j.id
  AND f.state IN ('failed', 'cancelled'))"""

#: the keys of the jobs with work left that can still finish, oldest first:
#: :data:`CAN_FINISH`, written as two lists read off the (state, job) index
#: (a search per job reads every task row: 6 ms a round with 2,000 jobs queued)
ACTIVE_JOBS = """
SELECT j.id, j.name, j.submitted FROM jobs j WHERE j.cancelled=0
  AND j.id IN (SELECT job FROM tasks WHERE state IN ('queued', 'running'))
  AND j.id NOT IN (SELECT job FROM tasks WHERE state IN ('failed', 'cancelled'))
ORDER BY j.id"""

_OPEN_ATTEMPTS = """SELECT a.id, a.pid, a.device, a.gang, a.log, a.exit_file, a.started, t.spec,
  t.attempts AS tries, t.state AS tstate, t.id AS tid, t.job FROM attempts a
  JOIN tasks t ON a.task=t.id WHERE a.ended IS NULL"""


def default_state_dir() -> Path:
    """``$RLSCHED_STATE``, else ``$XDG_STATE_HOME/rlsched``, else ``~/.local/state/rlsched``."""
    if os.environ.get("RLSCHED_STATE"):
        return Path(os.environ["RLSCHED_STATE"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rlsched"


class Store:
    """The state directory and its database.

    :param directory: created with mode 0700 if missing
    :param create: False for commands that only read or change what is
        there (status, logs, cancel, purge, resume): a state that does not
        exist is then an :class:`InputError`, and nothing is created
    """

    def __init__(self, directory: str | Path | None = None, create: bool = True) -> None:
        # absolute: an attempt's shell runs in its task's workdir, and must
        # write its pid and exit files where the daemon looks for them
        self.dir = (Path(directory) if directory else default_state_dir()).absolute()
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError(str(self.dir), "the state directory is a file, not a directory "
                             "(give --state a directory, or remove the file)")
        if not create and not (self.dir / "rlsched.db").is_file():
            raise InputError(str(self.dir), "no rlsched state here: nothing was submitted with "
                             "this --state (or $RLSCHED_STATE) yet")
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
        except OSError as e:
            raise InputError(str(self.dir), f"cannot use as the state directory ({e.strerror})") \
                from None
        self.path = self.dir / "rlsched.db"
        #: parsed jobs, see :meth:`jobs`
        self._parsed: dict[tuple[int, str, float], Job] = {}
        #: the task rows :meth:`active_tasks` read last, kept up to date with
        #: this store's own starts and ends; None: read them again
        self._rows: dict[tuple[str, str], StoredTask] | None = None
        self._rows_version = -1
        self._rows_jobs: set[str] = set()
        self._row_keys: dict[int, tuple[str, str]] = {}
        #: inside :meth:`batch`: every transaction joins its one
        self._batched = False
        #: changes made here that did not patch the kept rows (see :meth:`version`)
        self._own_changes = 0
        #: what :meth:`ended_attempts` read last, kept up to date with this store's own ends
        self._ended_kept: _EndedAttempts | None = None
        fresh = not self.path.exists()
        old = os.umask(0o077)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
        except sqlite3.Error as e:
            raise InputError(str(self.path), f"cannot open the database ({e})") from None
        finally:
            os.umask(old)
        if fresh:
            os.chmod(self.path, 0o600)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            # a commit survives the daemon's crash (kill -9) without an fsync
            # of its own; only a power loss may roll the last ones back, to a
            # consistent store whose lost attempts run again. An fsync per
            # commit would cost each dispatch 0.3 ms and up (far more on a disk)
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            self._upgrade()
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise InputError(str(self.path), f"not an rlsched database ({e})") from None
        except InputError:
            self.db.close()
            raise
        self.db.row_factory = sqlite3.Row

    def _upgrade(self) -> None:
        """Bring an older database to :data:`SCHEMA_VERSION`; refuse a newer one."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise InputError(str(self.path), f"written by a newer rlsched (schema {version}; "
                             f"this one reads up to {SCHEMA_VERSION}): upgrade rlsched")
        with self.transaction() as db:
            for table, column in (("attempts", "error"), ("tasks", "reason"), ("devices", "model"),
                                  ("attempts", "gang"), ("tasks", "gang"),
                                  ("attempts", "predicted_from")):
                if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self, rows_kept: bool = False) -> Iterator[sqlite3.Connection]:
        """One atomic change: all of it, or (on any error) none of it. It
        drops the rows :meth:`active_tasks` keeps, unless ``rows_kept``: the
        change patched them itself. Inside :meth:`batch`, it is part of the
        batch's one transaction."""
        # inside a batch, a savepoint: an error undoes this part alone, where caught
        begin, end, undo = (("SAVEPOINT part", "RELEASE part", ("ROLLBACK TO part", "RELEASE part"))
                            if self._batched else ("BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",)))
        self.db.execute(begin)
        try:
            yield self.db
        except BaseException:
            for statement in undo:
                self.db.execute(statement)
            self._forget()
            raise
        self.db.execute(end)
        if not rows_kept:
            self._forget()

    def _forget(self) -> None:
        """Drop what is kept of the rows: a change made here that did not
        patch them (see :meth:`version`)."""
        self._rows = self._ended_kept = None
        self._own_changes += 1

    def version(self) -> tuple[int, int]:
        """What changes whenever the store may have changed other than by
        the changes that patch the kept rows (:meth:`start_attempts`,
        :meth:`end_attempt`): another connection's commit (SQLite's
        ``data_version``), or any other change made through this one (a
        cancel or a submission by the daemon's own store object, as a
        library user or a test makes them)."""
        return self.data_version(), self._own_changes

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes as one transaction: each :meth:`transaction` inside
        joins it as a savepoint, so a round that ends 64 attempts commits
        once, not 64 times. An error out of it undoes all of them (the
        attempts' exit files remain: the next round reaps them again); one
        caught inside undoes its own part alone."""
        if self._batched:
            yield
            return
        with self.transaction(rows_kept=True):
            self._batched = True
            try:
                yield
            finally:
                self._batched = False

    def event(self, kind: str, job: int | None = None, task: int | None = None,
              detail: str = "") -> None:
        self.db.execute("INSERT INTO events (time, job, task, kind, detail) VALUES (?,?,?,?,?)",
                        (time.time(), job, task, kind, detail))

    def submit(self, instances: list[Instance]) -> list[str]:
        """Store every job of validated instances (job files) in one
        transaction: all of them, or none if any job name is taken."""
        for instance, job in ((i, j) for i in instances for j in i.jobs):
            check_name(job.name, instance.source, "job name")  # names are data, never paths
            for task in job.tasks:
                check_name(task.id, instance.source, f"job '{job.name}': task id")
        with self.transaction() as db:
            names = []
            for instance, job in ((i, j) for i in instances for j in i.jobs):
                if db.execute("SELECT 1 FROM jobs WHERE name=?", (job.name,)).fetchone():
                    raise InputError(instance.source, f"a job named '{job.name}' is already "
                                     "in the queue (rename it, or once the old one has ended, "
                                     f"rlsched purge {job.name})")
                cur = db.execute(
                    "INSERT INTO jobs (name, priority, deadline, submitted, source) "
                    "VALUES (?,?,?,?,?)",
                    (job.name, job.priority, job.deadline, time.time(), instance.source))
                job_pk = cur.lastrowid
                for position, task in enumerate(job.tasks):
                    spec = asdict(task)
                    spec["env"] = dict(task.env)
                    db.execute("INSERT INTO tasks (job, task_id, position, state, spec) "
                               "VALUES (?,?,?,?,?)",
                               (job_pk, task.id, position, TaskStatus.QUEUED.value,
                                json.dumps(spec)))
                self.event("submitted", job_pk, detail=instance.source)
                names.append(job.name)
            return names

    def cancel(self, name: str) -> int | None:
        """Cancel a job's unfinished tasks; the daemon kills those running.
        Returns how many tasks were cancelled, or None (and changes nothing)
        where the job has already ended: done, failed or cancelled."""
        with self.transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE name=?", (name,)).fetchone()
            if row is None:
                raise InputError(name, "no such job in the queue")
            if self._ended(row["id"]):
                return None
            db.execute("UPDATE jobs SET cancelled=1 WHERE id=?", (row["id"],))
            cur = db.execute("UPDATE tasks SET state='cancelled' WHERE job=? AND state IN "
                             "('queued', 'running')", (row["id"],))
            self.event("cancelled", row["id"])
            return cur.rowcount

    def purge(self, name: str) -> list[int]:
        """Remove an ended job (done, failed or cancelled) and its tasks and
        attempts, so that its name can be used again; the event log keeps its
        history. Returns the ids of the attempts removed, whose files the
        caller may delete.

        :raises InputError: no such job, or the job has work left (cancel it first)
        """
        with self.transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE name=?", (name,)).fetchone()
            if row is None:
                raise InputError(name, "no such job in the queue")
            if not self._ended(row["id"]):
                raise InputError(name, "the job has work left: cancel it first "
                                 f"(rlsched cancel {name}), then purge it")
            attempts = [r[0] for r in db.execute(
                "SELECT a.id FROM attempts a JOIN tasks t ON a.task=t.id WHERE t.job=?",
                (row["id"],))]
            db.execute("DELETE FROM attempts WHERE task IN (SELECT id FROM tasks WHERE job=?)",
                       (row["id"],))
            db.execute("DELETE FROM tasks WHERE job=?", (row["id"],))
            db.execute("DELETE FROM jobs WHERE id=?", (row["id"],))
            self.event("purged", row["id"], detail=name)
            return attempts

    def _ended(self, job: int) -> bool:
        """Whether a job has ended: cancelled, or with no task left to run or
        able to run (all done, or one failed and the rest skipped or done)."""
        row = self.db.execute(f"SELECT NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id=? AND "
                              f"{CAN_FINISH} AND EXISTS (SELECT 1 FROM tasks t WHERE t.job=j.id "
                              "AND t.state IN ('queued', 'running'))) AND NOT EXISTS (SELECT 1 "
                              "FROM attempts a JOIN tasks t ON a.task=t.id WHERE t.job=? AND "
                              "a.ended IS NULL)", (job, job)).fetchone()
        return bool(row[0])

    def queue_waits(self) -> list[float]:
        """Seconds each started task waited in the queue: from the moment it
        could start (its job submitted and its parents done) to its first
        attempt's start."""
        rows = self.db.execute(
            "SELECT t.job, t.task_id, t.spec, j.submitted, MIN(a.started) AS first, "
            "MAX(CASE WHEN a.exit_code=0 THEN a.ended END) AS done FROM tasks t "
            "JOIN jobs j ON t.job=j.id JOIN attempts a ON a.task=t.id GROUP BY t.id").fetchall()
        done = {(r["job"], r["task_id"]): r["done"] for r in rows}
        waits = []
        for r in rows:
            parents = [done.get((r["job"], p)) for p in json.loads(r["spec"])["parents"]]
            ready = max([r["submitted"], *(p for p in parents if p is not None)])
            waits.append(max(0.0, r["first"] - ready))
        return waits

    def record_misplaced(self, attempt: OpenAttempt, seen_on: int, pid: int) -> None:
        """NVML saw process ``pid`` of ``attempt`` on device ``seen_on``, not
        on the one it was given."""
        self.event("misplaced", attempt.job, attempt.task, json.dumps(
            {"attempt": attempt.ref.id, "given": attempt.ref.device, "seen": seen_on, "pid": pid}))

    def misplaced(self) -> list[dict[str, Any]]:
        """Every process NVML saw on a GPU its attempt was not given: ``job``,
        ``task``, ``attempt``, ``given``, ``seen``, ``pid``, ``time``."""
        out = []
        for r in self.db.execute("SELECT e.time, e.detail, t.task_id, j.name FROM events e "
                                 "JOIN tasks t ON e.task=t.id JOIN jobs j ON t.job=j.id "
                                 "WHERE e.kind='misplaced' ORDER BY e.id"):
            out.append({"job": r["name"], "task": r["task_id"], "time": r["time"],
                        **json.loads(r["detail"])})
        return out

    def drain(self, gpu: int | None = None) -> None:
        """Start nothing new on device ``gpu`` (a device key), or on any with
        None; what runs there finishes. Lasts until :meth:`resume`, across
        restarts of the daemon."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO drains (gpu, since) VALUES (?, ?)",
                       (ALL_GPUS if gpu is None else gpu, time.time()))
            self.event("drain", detail=json.dumps({"gpu": gpu}))

    def resume(self, gpu: int | None = None) -> int:
        """End the drain of device ``gpu`` (None: every drain); returns how many ended."""
        with self.transaction() as db:
            cur = db.execute("DELETE FROM drains" + ("" if gpu is None else " WHERE gpu=?"),
                             () if gpu is None else (gpu,))
            self.event("resume", detail=json.dumps({"gpu": gpu}))
            return cur.rowcount

    def drained(self) -> set[int]:
        """The drained device keys (:data:`ALL_GPUS` for the whole pool)."""
        return {r[0] for r in self.db.execute("SELECT gpu FROM drains")}

    def status(self) -> dict[str, Any]:
        """``{"jobs": [{"name", "state", "priority", "submitted", "finished",
        "jct_s", "tasks": [{"id", "state", "device", "devices", "attempts", "reason",
        "estimate_s", "runtime_s", "predicted_s", "predicted_from"}]}]}`` in submission order.
        A task's ``devices`` are every device of its latest attempt (several
        for a gang, ``device`` first); ``estimate_s`` is its user's, ``runtime_s`` its successful
        attempt's, ``predicted_s`` what the runtime model predicted, on its
        device, when its latest attempt started (None before one has), and
        ``predicted_from`` what that prediction rested on.
        ``finished`` (the end of its last task) and ``jct_s`` (job
        completion time: finished - submitted) are None until the job is
        done; a task's ``reason`` says why it failed, was skipped, or cannot
        be placed (it fits no GPU of the pool serve last saw), else why its
        latest attempt failed, else None."""
        jobs = []
        pool = self.known_pool()
        ends = dict(self.db.execute(
            "SELECT t.job, MAX(a.ended) FROM attempts a JOIN tasks t ON a.task=t.id "
            "WHERE a.exit_code=0 GROUP BY t.job").fetchall())
        latest = {r["task"]: r for r in self.db.execute(
            "SELECT task, exit_code, error, log, predicted, predicted_from FROM attempts WHERE id IN "
            "(SELECT MAX(id) FROM attempts GROUP BY task)")}
        runtime = dict(self.db.execute(
            "SELECT task, ended - started FROM attempts WHERE exit_code=0").fetchall())
        for j in self.db.execute("SELECT * FROM jobs ORDER BY id"):
            tasks = [{"id": t["task_id"], "state": t["state"], "device": t["device"],
                      "devices": devices_of(t["device"], t["gang"]),
                      "attempts": t["attempts"], **_why(t, latest.get(t["id"]), pool),
                      "estimate_s": _estimate(t["spec"]), "runtime_s": runtime.get(t["id"]),
                      "predicted_s": latest[t["id"]]["predicted"] if t["id"] in latest else None,
                      "predicted_from":
                          latest[t["id"]]["predicted_from"] if t["id"] in latest else None}
                     for t in self.db.execute("SELECT * FROM tasks WHERE job=? ORDER BY position",
                                              (j["id"],))]
            state = job_state(bool(j["cancelled"]), tasks)
            finished = ends.get(j["id"]) if state == "done" else None
            jobs.append({"name": j["name"], "state": state,
                         "priority": j["priority"], "submitted": j["submitted"],
                         "finished": finished,
                         "jct_s": None if finished is None else finished - j["submitted"],
                         "tasks": tasks})
        drained = self.drained()
        devices = [{**dict(r), "drained": ALL_GPUS in drained or r["idx"] in drained}
                   for r in self.db.execute("SELECT * FROM devices ORDER BY idx")]
        return {"jobs": jobs, "devices": devices, "drained": sorted(drained),
                "serve_pid": serve_holder(self.dir),
                "misplaced": self.misplaced(), "prediction": self.prediction_error()}

    def find_task(self, name: str) -> int | None:
        """The task named ``JOB/TASK`` (or ``TASK``, where one job alone has
        it), as its row id; None if there is none. Names from before the
        name rule may hold ``/``: every split is tried, so they still resolve.

        :raises InputError: ``TASK`` alone where several jobs have it
        """
        splits = [(name[:i], name[i + 1:]) for i, c in enumerate(name) if c == "/"]
        for job, task in splits:
            row = self.db.execute("SELECT t.id FROM tasks t JOIN jobs j ON t.job=j.id WHERE "
                                  "j.name=? AND t.task_id=?", (job, task)).fetchone()
            if row is not None:
                return row[0]
        found = self.db.execute("SELECT t.id, j.name FROM tasks t JOIN jobs j ON t.job=j.id "
                                "WHERE t.task_id=? ORDER BY t.id", (name,)).fetchall()
        if len(found) > 1:
            jobs = ", ".join(r[1] for r in found[:5]) + (", ..." if len(found) > 5 else "")
            raise InputError(name, f"{len(found)} jobs have a task of that id ({jobs}): "
                             "name it as JOB/TASK")
        return found[0][0] if found else None

    def task_status(self, task: int) -> str:
        """A task's state now (by row id)."""
        return self.db.execute("SELECT state FROM tasks WHERE id=?", (task,)).fetchone()[0]

    def job_tasks(self, name: str) -> list[str] | None:
        """The task ids of the job ``name``, or None if there is no such job."""
        row = self.db.execute("SELECT id FROM jobs WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        return [t[0] for t in self.db.execute("SELECT task_id FROM tasks WHERE job=? ORDER BY "
                                              "position", (row[0],))]

    def latest_attempt(self, task: int, attempt: int | None = None) -> sqlite3.Row | None:
        """The latest attempt of a task (or the attempt ``attempt``): its
        ``id``, ``log``, ``ended`` and ``error``."""
        if attempt is not None:
            return self.db.execute("SELECT id, log, ended, error FROM attempts WHERE id=?",
                                   (attempt,)).fetchone()
        return self.db.execute("SELECT id, log, ended, error FROM attempts WHERE task=? ORDER BY "
                               "id DESC LIMIT 1", (task,)).fetchone()

    def finished_runs(self, after: tuple[float, int] = (-math.inf, 0)
                      ) -> list[tuple[str, dict[str, Any], int | None, float, float, int, int]]:
        """Successful attempts in the order they ended (ties by id), after
        ``(ended, id)``: ``(job name, task spec, device, started, ended, id,
        task row id)``. The runtime model learns from them
        (:func:`rlsched.live.history.observations`)."""
        return [(r["name"], json.loads(r["spec"]), r["device"], r["started"], r["ended"], r["id"],
                 r["task"])
                for r in self.db.execute(
                    "SELECT a.id, a.task, a.device, a.started, a.ended, t.spec, j.name FROM attempts a "
                    "JOIN tasks t ON a.task=t.id JOIN jobs j ON t.job=j.id WHERE a.exit_code=0 "
                    "AND a.ended IS NOT NULL AND (a.ended > ? OR (a.ended = ? AND a.id > ?)) "
                    "ORDER BY a.ended, a.id", (after[0], after[0], after[1]))]

    def ended_attempts(self, job_names: list[str]) -> tuple[dict[str, float], dict[int, float]]:
        """For the named jobs: the GPU device-seconds each one's ended
        attempts received (added in the order they ended), and when each
        task's latest attempt ended (by task row id), for the order in
        which tasks became ready (the second may hold other jobs' tasks too).

        The control loop asks every round, about every active job; what it
        read is kept, and this store's own ends are added to it as they are
        made (:meth:`end_attempt`), in the order a fresh read adds them. It
        is read again where another process changed the store, and for jobs
        not read before."""
        version = self.data_version()
        kept = self._ended_kept
        if kept is None or version != kept.version or len(kept.jobs) > 2 * len(job_names) + 64:
            kept = self._ended_kept = _EndedAttempts(version)
        missing = [n for n in job_names if n not in kept.names]
        for i in range(0, len(missing), 500):  # SQLite's limit on parameters
            names = missing[i:i + 500]
            kept.names.update(names)
            cursor = self.db.execute(
                "SELECT j.id, j.name, a.task, a.device, a.ended - a.started, a.ended "
                "FROM attempts a JOIN tasks t ON a.task=t.id JOIN jobs j ON t.job=j.id "
                f"WHERE a.ended IS NOT NULL AND j.name IN ({','.join('?' * len(names))}) "
                "ORDER BY a.ended, a.id", names)
            cursor.row_factory = None
            for job, name, task, device, spent, last in cursor:
                kept.jobs[job] = name
                kept.add(name, task, device, spent, last)
            # (a job with no ended attempt yet is known by name: its first end is added)
            for job, name in self.db.execute(
                    f"SELECT id, name FROM jobs WHERE name IN ({','.join('?' * len(names))})",
                    names).fetchall():
                kept.jobs[job] = name
        service = kept.service
        return {n: service[n] for n in job_names if n in service}, kept.last

    def prediction_error(self) -> dict[str, Any]:
        """How far predictions were from the runtimes they predicted: real
        predictions only, not the fixed guess made when nothing was known
        (``predicted_from`` ``default``)."""
        errors = [abs(r["predicted"] - (r["ended"] - r["started"])) for r in self.db.execute(
            "SELECT predicted, started, ended FROM attempts WHERE exit_code=0 AND predicted "
            "IS NOT NULL AND (predicted_from IS NULL OR predicted_from != 'default')")]
        return {"samples": len(errors),
                "mean_abs_error_s": sum(errors) / len(errors) if errors else None}

    def jobs(self, active_only: bool = False) -> list[Job]:
        """Stored jobs as workload :class:`Job` s, in submission order; with
        ``active_only``, only those the control loop still schedules (a task
        queued or running, none failed or cancelled). The control loop asks
        every round, so it must not read the whole history each time.

        A job's specification never changes once stored, so each is parsed
        once per store object and kept, keyed by its row, name and submission
        time (a purged job's row id can be used again, never with both).
        """
        out = []
        # the keys only, as plain tuples: this runs every round, over every active job
        cursor = self.db.execute(
            ACTIVE_JOBS if active_only else "SELECT id, name, submitted FROM jobs ORDER BY id")
        cursor.row_factory = None
        for key in cursor.fetchall():
            job = self._parsed.get(key)
            if job is None:
                row = self.db.execute("SELECT * FROM jobs WHERE id=?", (key[0],)).fetchone()
                if row is None or (row["id"], row["name"], row["submitted"]) != key:
                    continue  # purged (and its id perhaps taken) since the keys were read
                job = self._parsed[key] = self._parse_job(row)
            out.append(job)
        return out

    def _parse_job(self, j: sqlite3.Row) -> Job:
        """The workload :class:`Job` of a ``jobs`` row and its tasks' specs."""
        tasks = []
        for t in self.db.execute("SELECT spec FROM tasks WHERE job=? ORDER BY position",
                                 (j["id"],)):
            spec = json.loads(t["spec"])
            for key in ("parents", "data_from_parents", "gpus_allowed", "gpus_avoid"):
                if key in spec:  # a store older than placement rules has none
                    spec[key] = tuple(spec[key])
            if "estimate" not in spec:  # an older store kept the estimate as ``work``
                spec["estimate"] = spec.get("work")
            tasks.append(Task(**spec))
        return Job(j["name"], tuple(tasks), j["submitted"], j["priority"], j["deadline"])

    # ------------------------------------------------------------ the control loop's queries
    def has_work(self) -> bool:
        """Whether any attempt is open (a killed one until it is reaped), or any
        task is queued in a job that can still finish."""
        row = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM attempts WHERE ended IS NULL) OR EXISTS (SELECT 1 "
            f"FROM tasks t JOIN jobs j ON t.job=j.id WHERE t.state='queued' AND {CAN_FINISH})"
            ).fetchone()
        return bool(row[0])

    def stranded(self, pool: Pool) -> list[tuple[str, str]]:
        """``(job/task, why)`` of each queued task that could start (its
        parents done) but that no GPU of ``pool`` can ever take, when nothing
        runs and no other queued task could start: a queue that will never
        move on this pool. Empty otherwise."""
        if self.db.execute("SELECT 1 FROM attempts WHERE ended IS NULL LIMIT 1").fetchone():
            return []
        rows = self.db.execute(
            "SELECT t.job, j.name, t.task_id, t.state, t.spec FROM tasks t JOIN jobs j "
            f"ON t.job=j.id WHERE {CAN_FINISH} AND EXISTS (SELECT 1 FROM tasks q "
            "WHERE q.job=j.id AND q.state='queued')").fetchall()
        done = {(r["job"], r["task_id"]) for r in rows if r["state"] == TaskStatus.DONE.value}
        out = []
        for r in rows:
            if r["state"] != TaskStatus.QUEUED.value:
                continue
            spec = json.loads(r["spec"])
            if all((r["job"], p) in done for p in spec["parents"]):
                why = _unschedulable(spec, pool)
                if why is None:
                    return []  # this one can start
                out.append((f"{r['name']}/{r['task_id']}", why))
        return out

    def open_attempts(self, attempt: int | None = None) -> list[OpenAttempt]:
        """Every attempt not yet ended (or only ``attempt``), oldest first."""
        query = _OPEN_ATTEMPTS + (" AND a.id=?" if attempt is not None else "") + " ORDER BY a.id"
        return [_open_attempt(r) for r in self.db.execute(
            query, () if attempt is None else (attempt,))]

    def job_failed(self, job: int) -> bool:
        """Whether a task of the job has failed for good."""
        return self.db.execute("SELECT EXISTS (SELECT 1 FROM tasks WHERE job=? AND state=?)",
                               (job, TaskStatus.FAILED.value)).fetchone()[0] == 1

    def lost_attempts(self, task: int, lost_code: int) -> int:
        """Attempts of ``task`` that ended with ``lost_code`` (process or node gone)."""
        return self.db.execute("SELECT COUNT(*) FROM attempts WHERE task=? AND exit_code=?",
                               (task, lost_code)).fetchone()[0]

    def end_attempt(self, attempt: OpenAttempt, code: int, ended: float, error: str | None,
                    status: TaskStatus, not_before: float) -> None:
        """Record how an attempt ended and what its task becomes, in one transaction."""
        failed = status == TaskStatus.FAILED  # its job's other tasks change too: read them again
        with self.transaction(rows_kept=not failed) as db:
            db.execute("UPDATE attempts SET ended=?, exit_code=?, error=? WHERE id=?",
                       (ended, code, error, attempt.ref.id))
            db.execute("UPDATE tasks SET state=?, not_before=? WHERE id=?",
                       (status.value, not_before, attempt.task))
            self.event("ended", attempt.job, attempt.task,
                       json.dumps({"exit": code, "state": status.value}))
            if failed:
                self._skip_descendants(attempt.job, attempt.task)
        if not failed:
            self._patch_row(attempt.task, status=status, not_before=not_before)
        kept = self._ended_kept
        name = kept.jobs.get(attempt.job) if kept is not None else None
        if kept is not None and name is not None:
            kept.add(name, attempt.task, attempt.ref.device, ended - attempt.started, ended)

    def _skip_descendants(self, job: int, failed: int) -> None:
        """Mark the job's tasks that have not started skipped, with the reason:
        those downstream of the failed task ``failed`` can never run, and the
        job, failed, runs nothing more (inside a transaction)."""
        rows = self.db.execute("SELECT id, task_id, state, spec FROM tasks WHERE job=?",
                               (job,)).fetchall()
        children: dict[str, list[str]] = {}
        for r in rows:
            for parent in json.loads(r["spec"])["parents"]:
                children.setdefault(parent, []).append(r["task_id"])
        by_id = {r["task_id"]: r for r in rows}
        root = next(r["task_id"] for r in rows if r["id"] == failed)
        todo, seen = list(children.get(root, [])), set()
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            todo += children.get(t, [])
            if by_id[t]["state"] == TaskStatus.QUEUED.value:
                self.db.execute("UPDATE tasks SET state=?, reason=? WHERE id=?",
                                (TaskStatus.SKIPPED.value, f"skipped: '{root}' failed",
                                 by_id[t]["id"]))
        self.db.execute("UPDATE tasks SET state=?, reason=? WHERE job=? AND state=?",
                        (TaskStatus.SKIPPED.value, f"skipped: its job failed ('{root}')", job,
                         TaskStatus.QUEUED.value))

    def active_tasks(self, job_names: list[str]) -> Mapping[tuple[str, str], StoredTask]:
        """The tasks of the named jobs, by ``(job name, task id)``, to look
        up (read-only; it may hold other jobs' tasks too: those of jobs read
        before, finished since).

        The control loop asks every round, and its own changes are a task's
        start and an attempt's end: those patch the rows kept from the last
        read (:meth:`start_attempt`, :meth:`end_attempt`), and the rows are
        read again only when another change was made here (any other
        transaction), another process changed the store (SQLite's
        ``data_version``), or a job not read before is asked for.
        """
        version = self.data_version()
        names = set(job_names)
        if self._rows is None or version != self._rows_version or not names <= self._rows_jobs:
            self._rows = self._read_tasks(job_names)
            self._rows_version, self._rows_jobs = version, names
            self._row_keys = {t.id: key for key, t in self._rows.items()}
        return MappingProxyType(self._rows)  # (as jobs finish, no copy, no filter)

    def kept_row(self, task: int) -> StoredTask | None:
        """Task row ``task`` as :meth:`active_tasks` keeps it, this store's
        own changes patched in; None where the rows are not kept (they will
        be read again). Whether the store changed otherwise since they were
        read, :meth:`version` says: the caller asks it once, not per row."""
        key = self._row_keys.get(task)
        if self._rows is None or key is None:
            return None
        return self._rows.get(key)

    def data_version(self) -> int:
        """SQLite's ``data_version``: it changes when another connection
        commits a change, never with this one's own."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def _patch_row(self, task: int, **changes: Any) -> None:
        """Apply this store's own change of task row ``task`` to the kept rows."""
        if self._rows is not None and task in self._row_keys:
            key = self._row_keys[task]
            self._rows[key] = replace(self._rows[key], **changes)

    def _read_tasks(self, job_names: list[str]) -> dict[tuple[str, str], StoredTask]:
        out: dict[tuple[str, str], StoredTask] = {}
        for i in range(0, len(job_names), 500):  # SQLite's limit on parameters
            names = job_names[i:i + 500]
            cursor = self.db.execute(
                "SELECT t.id, t.job, j.name, t.task_id, t.state, t.device, t.attempts, "
                "t.not_before, t.gang FROM tasks t JOIN jobs j ON t.job=j.id "
                f"WHERE j.name IN ({','.join('?' * len(names))})", names)
            cursor.row_factory = None  # plain tuples: this runs every round, over every task
            for row_id, job, jname, task_id, state, device, tries, not_before, gang in cursor:
                out[(jname, task_id)] = StoredTask(
                    row_id, job, jname, task_id, _STATUS[state], device, tries, not_before,
                    tuple(devices_of(device, gang)[1:]) if gang else ())
        return out

    def open_attempt_starts(self) -> dict[int, float]:
        """When the open attempt of each task started, by task row id."""
        return dict(self.db.execute("SELECT task, started FROM attempts WHERE ended IS NULL")
                    .fetchall())

    def start_attempt(self, task: StoredTask, device: int | None, predicted: float | None,
                      files: Any, gang: tuple[int, ...] = (), predicted_from: str | None = None
                      ) -> tuple[int, Path, Path]:
        """Commit a new attempt of ``task`` (now running on ``device``, and a
        gang's other devices ``gang``) before its process exists, so that a
        crash in between leaves an attempt the next daemon retries.
        ``files(attempt_id)`` names its log and exit file. Returns the
        attempt's id, log and exit file."""
        (started,) = self.start_attempts([NewAttempt(task, device, predicted, gang,
                                                     predicted_from)], files)
        return started

    def start_attempts(self, new: list[NewAttempt], files: Any) -> list[tuple[int, Path, Path]]:
        """:meth:`start_attempt` for each of ``new``, in one transaction: a
        round's starts cost one commit, not one each. Their processes start
        after it, and :meth:`attempts_started` records them, again together."""
        out = []
        with self.transaction(rows_kept=True) as db:
            now = time.time()
            for a in new:
                mates = ",".join(map(str, a.gang)) or None
                db.execute("UPDATE tasks SET state='running', device=?, gang=?, attempts=? "
                           "WHERE id=?", (a.device, mates, a.task.attempts + 1, a.task.id))
                attempt = int(db.execute(
                    "INSERT INTO attempts (task, device, gang, started, predicted, "
                    "predicted_from) VALUES (?,?,?,?,?,?)",
                    (a.task.id, a.device, mates, now, a.predicted, a.predicted_from)
                ).lastrowid or 0)
                log, exit_file = files(attempt)
                db.execute("UPDATE attempts SET log=?, exit_file=? WHERE id=?",
                           (str(log), str(exit_file), attempt))
                out.append((attempt, log, exit_file))
        for a in new:
            self._patch_row(a.task.id, status=TaskStatus.RUNNING, device=a.device,
                            gang=tuple(a.gang), attempts=a.task.attempts + 1)
        return out

    def attempts_started(self, launched: Sequence[tuple[int, StoredTask, int | None,
                                                        int | None, float | None]]) -> None:
        """Record each ``(attempt, task, device, pid, started)`` in one
        transaction; ``started`` (None: keep the commit's time) is when its
        process was launched, which a round of many starts puts later than
        the commit."""
        with self.transaction(rows_kept=True) as db:
            for attempt, task, device, pid, started in launched:
                if started is None:
                    db.execute("UPDATE attempts SET pid=? WHERE id=?", (pid, attempt))
                else:
                    db.execute("UPDATE attempts SET pid=?, started=? WHERE id=?",
                               (pid, started, attempt))
                self.event("started", task.job, task.id, json.dumps({"device": device, "pid": pid}))

    def task_spec(self, task: int) -> dict[str, Any]:
        """A task's stored specification (its :class:`Task` fields)."""
        return json.loads(self.db.execute("SELECT spec FROM tasks WHERE id=?",
                                          (task,)).fetchone()[0])

    def publish_devices(self, rows: Iterable[tuple]) -> None:
        """Replace the devices ``status`` shows: one ``(key, name, uuid,
        utilization, memory_used, memory_total, temperature_c, power_w,
        healthy, tasks, model)`` each; a device left out is no longer listed."""
        now = time.time()
        with self.transaction(rows_kept=True) as db:
            db.execute("DELETE FROM devices")
            db.executemany(
                "INSERT OR REPLACE INTO devices (idx, name, uuid, utilization, memory_used, "
                "memory_total, temperature_c, power_w, healthy, tasks, model, updated) VALUES "
                "(?,?,?,?,?,?,?,?,?,?,?,?)", [(*r, now) for r in rows])

    def known_pool(self) -> Pool | None:
        """The pool serve last published (its devices' indices, model names and
        memory), for checks at submit; None before any serve."""
        rows = self.db.execute("SELECT idx, model, name, memory_total FROM devices ORDER BY idx"
                               ).fetchall()
        if not rows:
            return None
        served = self.db.execute("SELECT detail FROM events WHERE kind='serve' ORDER BY id DESC "
                                 "LIMIT 1").fetchone()
        spec = json.loads(served["detail"]).get("pool") if served and served["detail"] else None
        # named as serve was given it (fake:4, local), which the user recognises
        return Pool(spec or "last served", tuple(
            Device(r["idx"], GpuModel(r["model"] or r["name"], 1.0, 1.0, r["memory_total"], 0.0,
                                      0.0, 0.0)) for r in rows))

    # ------------------------------------------------------------ for benchmarks
    def mark_all_done(self) -> None:
        """Give every task one successful attempt (on device 0, from 0.0 to
        1.0 s): a store with a long past, as a daemon that ran for months has."""
        with self.transaction() as db:
            db.execute("INSERT INTO attempts (task, device, started, ended, exit_code) "
                       "SELECT id, 0, 0.0, 1.0, 0 FROM tasks")
            db.execute("UPDATE tasks SET state='done', attempts=1, device=0")

    def attempt_times(self, exclude_jobs_like: str) -> list[tuple[int, int | None, float,
                                                                  float | None, list[str]]]:
        """``(task, device, started, ended, parents)`` of every attempt, by
        start, but those of jobs whose name is ``LIKE exclude_jobs_like``."""
        rows = self.db.execute(
            "SELECT a.task, a.device, a.started, a.ended, t.spec FROM attempts a JOIN tasks t ON "
            "a.task=t.id JOIN jobs j ON t.job=j.id WHERE j.name NOT LIKE ? ORDER BY a.started",
            (exclude_jobs_like,)).fetchall()
        return [(r[0], r[1], r[2], r[3], json.loads(r[4])["parents"]) for r in rows]


class _EndedAttempts:
    """What :meth:`Store.ended_attempts` has read: the jobs read (by row id
    and name), each one's GPU device-seconds, each task's latest end; as of
    the database's ``data_version``."""

    __slots__ = ("version", "names", "jobs", "service", "last")

    def __init__(self, version: int) -> None:
        self.version = version
        self.names: set[str] = set()
        self.jobs: dict[int, str] = {}
        self.service: dict[str, float] = {}
        self.last: dict[int, float] = {}

    def add(self, name: str, task: int, device: int | None, spent: float, ended: float) -> None:
        """An ended attempt of job ``name``'s ``task`` (``device`` None: on no GPU)."""
        if device is not None:
            self.service[name] = self.service.get(name, 0.0) + spent
        last = self.last.get(task)
        if last is None or ended > last:
            self.last[task] = ended


def _open_attempt(r: sqlite3.Row) -> OpenAttempt:
    spec = json.loads(r["spec"])
    return OpenAttempt(
        AttemptRef(r["id"], r["pid"], r["device"], Path(r["log"] or ""),
                   Path(r["exit_file"] or ""), float(spec.get("gpu_memory") or 0.0),
                   tuple(devices_of(r["device"], r["gang"])[1:])),
        r["tid"], r["job"], TaskStatus(r["tstate"]), r["tries"], int(spec.get("retries") or 0),
        spec.get("timeout"), r["started"])


#: a stored state's status
_STATUS = {status.value: status for status in TaskStatus}


def devices_of(device: int | None, gang: str | None) -> list[int]:
    """Every device key of an attempt: ``device``, then its gang's others."""
    if device is None:
        return []
    return [device, *(int(k) for k in gang.split(","))] if gang else [device]


def _unschedulable(spec: dict[str, Any], pool: Pool) -> str | None:
    """Why no GPU of ``pool`` can ever take the task ``spec``, or None."""
    if not spec["gpus"]:
        return None
    allowed, avoid = tuple(spec.get("gpus_allowed") or ()), tuple(spec.get("gpus_avoid") or ())
    usable = [d for d in pool.devices if placement_allows(allowed, avoid, d.index, d.model.name)]
    if not usable:
        return "unschedulable: its gpus_allowed/gpus_avoid leave it no GPU of the pool"
    largest = max(d.model.memory_gib for d in usable)
    if not fits_memory(spec["gpu_memory"], largest):
        return (f"unschedulable: needs {spec['gpu_memory']:g} GiB of GPU memory; the largest "
                f"GPU {'it may use' if allowed or avoid else 'of the pool'} has {largest:g} GiB")
    if spec["gpus"] > 1:
        per_host: dict[str, int] = {}
        for d in usable:
            if fits_memory(spec["gpu_memory"], d.model.memory_gib):
                per_host[d.host] = per_host.get(d.host, 0) + 1
        most = sum(per_host.values()) if pool.hosts_linked else max(per_host.values())
        if most < spec["gpus"]:
            return (f"unschedulable: needs {spec['gpus']} GPUs at once; "
                    f"{'the pool' if pool.hosts_linked else 'one host'} has {most} it may use")
    return None


#: lines of a failed task's log that ``status`` shows
LOG_TAIL_LINES = 5


def _estimate(spec: str) -> float | None:
    """The user's estimate in a stored task spec (an older store kept it as ``work``)."""
    doc = json.loads(spec)
    return doc.get("estimate", doc.get("work"))


def _why(task: sqlite3.Row, attempt: sqlite3.Row | None, pool: Pool | None) -> dict[str, Any]:
    """``reason`` (why the task failed, was skipped, cannot be placed on
    ``pool``, the one serve last saw, or its latest attempt failed; else
    None) and, for a failed task, ``log_tail``: its log's last lines."""
    tried = attempt_reason(attempt["exit_code"], attempt["error"]) if attempt is not None else None
    reason = task["reason"] or tried
    if task["reason"] and tried:  # skipped while waiting to be retried
        reason = f"{task['reason']}; its last attempt: {tried}"
    if task["state"] == TaskStatus.QUEUED.value and pool is not None:
        reason = _unschedulable(json.loads(task["spec"]), pool) or reason
    out: dict[str, Any] = {"reason": reason}
    if task["state"] == TaskStatus.FAILED.value and attempt is not None:
        out["log_tail"] = log_tail(attempt["log"])
    return out


def log_tail(path: str | None, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a log (empty if it cannot be read)."""
    try:
        with open(path or "", "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def attempt_reason(exit_code: int | None, error: str | None) -> str | None:
    """Why an ended attempt failed, for a person: what the daemon recorded
    (it could not start, it timed out, it was lost), else its exit code."""
    if error:
        return error
    if exit_code is None or exit_code == 0:
        return None
    return f"exit code {exit_code}"


def job_state(cancelled: bool, tasks: list[dict[str, Any]]) -> str:
    states = {t["state"] for t in tasks}
    if cancelled:
        return "cancelled"
    if "failed" in states or "skipped" in states:
        return "failed"
    if states == {"done"}:
        return "done"
    if "running" in states:
        return "running"
    return "queued"
