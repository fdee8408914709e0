"""The durable queue of the live scheduler: SQLite in WAL mode.

Jobs, tasks, attempts and events live in one database under the state
directory (mode 0700; the database 0600). Every state change is one
transaction, so a crash loses nothing that was acknowledged, and
``rlsched submit`` works whether or not the daemon runs: the daemon reads new
work from the same file.

Task states: ``queued`` (waiting for parents or a device), ``running``,
``done``, ``failed`` (no retries left), ``cancelled``. A job's state follows
from its tasks: cancelled if cancelled, failed if a task failed, done when
all are done, running while any runs, else queued.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlsched.errors import InputError
from rlsched.workload import Instance, Job, check_name

TASK_STATES = ("queued", "running", "done", "failed", "cancelled")

#: The database's layout (``PRAGMA user_version``). 1: the first release (it
#: left user_version at 0); 2: ``attempts.error``, why an attempt could not
#: start. Older databases are upgraded in place; a newer one is refused.
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, priority REAL NOT NULL,
    deadline REAL, submitted REAL NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY, job INTEGER NOT NULL REFERENCES jobs(id), task_id TEXT NOT NULL,
    position INTEGER NOT NULL, state TEXT NOT NULL, device INTEGER, spec TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0,
    UNIQUE (job, task_id));
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, task INTEGER NOT NULL REFERENCES tasks(id), device INTEGER,
    pid INTEGER, started REAL NOT NULL, ended REAL, exit_code INTEGER, log TEXT,
    exit_file TEXT, predicted REAL, error TEXT);
CREATE TABLE IF NOT EXISTS devices (
    idx INTEGER PRIMARY KEY, name TEXT, uuid TEXT, utilization REAL, memory_used REAL,
    memory_total REAL, temperature_c REAL, power_w REAL, healthy INTEGER, tasks INTEGER,
    updated REAL);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state);
CREATE INDEX IF NOT EXISTS open_attempts ON attempts (ended);
CREATE INDEX IF NOT EXISTS attempts_by_task ON attempts (task);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, job INTEGER, task INTEGER,
    kind TEXT NOT NULL, detail TEXT);
"""


#: jobs with work left that can still finish, oldest first
ACTIVE_JOBS = """
SELECT * FROM jobs j WHERE j.cancelled=0
  AND EXISTS (SELECT 1 FROM tasks t WHERE t.job=j.id AND t.state IN ('queued', 'running'))
  AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.job=j.id AND t.state IN ('failed', 'cancelled'))
ORDER BY j.id"""


def default_state_dir() -> Path:
    """``$RLSCHED_STATE``, else ``$XDG_STATE_HOME/rlsched``, else ``~/.local/state/rlsched``."""
    if os.environ.get("RLSCHED_STATE"):
        return Path(os.environ["RLSCHED_STATE"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rlsched"


class Store:
    """The state directory and its database.

    :param directory: created with mode 0700 if missing
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.dir = Path(directory) if directory else default_state_dir()
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError(str(self.dir), "the state directory is a file, not a directory "
                             "(give --state a directory, or remove the file)")
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
        except OSError as e:
            raise InputError(str(self.dir), f"cannot use as the state directory ({e.strerror})") \
                from None
        self.path = self.dir / "rlsched.db"
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
            columns = {r[1] for r in db.execute("PRAGMA table_info(attempts)")}
            if "error" not in columns:
                db.execute("ALTER TABLE attempts ADD COLUMN error TEXT")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change: all of it, or (on any error) none of it."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

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
                                     "in the queue (rename it, or cancel the old one)")
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
                               (job_pk, task.id, position, "queued", json.dumps(spec)))
                self.event("submitted", job_pk, detail=instance.source)
                names.append(job.name)
            return names

    def cancel(self, name: str) -> int:
        """Cancel a job's unfinished tasks; the daemon kills those running.
        Returns how many tasks were cancelled."""
        with self.transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE name=?", (name,)).fetchone()
            if row is None:
                raise InputError(name, "no such job in the queue")
            db.execute("UPDATE jobs SET cancelled=1 WHERE id=?", (row["id"],))
            cur = db.execute("UPDATE tasks SET state='cancelled' WHERE job=? AND state IN "
                             "('queued', 'running')", (row["id"],))
            self.event("cancelled", row["id"])
            return cur.rowcount

    def status(self) -> dict[str, Any]:
        """``{"jobs": [{"name", "state", "priority", "submitted", "finished",
        "jct_s", "tasks": [{"id", "state", "device", "attempts", "reason"}]}]}``
        in submission order; ``finished`` (the end of its last task) and
        ``jct_s`` (job completion time: finished - submitted) are None until
        the job is done; a task's ``reason`` says why its latest attempt
        failed (None while it runs or after it succeeded)."""
        jobs = []
        ends = dict(self.db.execute(
            "SELECT t.job, MAX(a.ended) FROM attempts a JOIN tasks t ON a.task=t.id "
            "WHERE a.exit_code=0 GROUP BY t.job").fetchall())
        reasons = {r["task"]: attempt_reason(r["exit_code"], r["error"]) for r in self.db.execute(
            "SELECT task, exit_code, error FROM attempts WHERE id IN "
            "(SELECT MAX(id) FROM attempts GROUP BY task)")}
        for j in self.db.execute("SELECT * FROM jobs ORDER BY id"):
            tasks = [{"id": t["task_id"], "state": t["state"], "device": t["device"],
                      "attempts": t["attempts"], "reason": reasons.get(t["id"])}
                     for t in self.db.execute("SELECT * FROM tasks WHERE job=? ORDER BY position",
                                              (j["id"],))]
            state = job_state(bool(j["cancelled"]), tasks)
            finished = ends.get(j["id"]) if state == "done" else None
            jobs.append({"name": j["name"], "state": state,
                         "priority": j["priority"], "submitted": j["submitted"],
                         "finished": finished,
                         "jct_s": None if finished is None else finished - j["submitted"],
                         "tasks": tasks})
        devices = [dict(r) for r in self.db.execute("SELECT * FROM devices ORDER BY idx")]
        return {"jobs": jobs, "devices": devices, "prediction": self.prediction_error()}

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

    def history(self) -> dict[str, list[float]]:
        """Runtimes of successful attempts, by command and by ``job/task``."""
        out: dict[str, list[float]] = {}
        for r in self.db.execute(
                "SELECT a.started, a.ended, t.spec, t.task_id, j.name FROM attempts a JOIN tasks "
                "t ON a.task=t.id JOIN jobs j ON t.job=j.id WHERE a.exit_code=0"):
            runtime = r["ended"] - r["started"]
            command = json.loads(r["spec"]).get("command") or ""
            out.setdefault(f"cmd:{command}", []).append(runtime)
            out.setdefault(f"id:{r['name']}/{r['task_id']}", []).append(runtime)
        return out

    def prediction_error(self) -> dict[str, Any]:
        """How far history-based predictions were from the runtimes they predicted."""
        errors = [abs(r["predicted"] - (r["ended"] - r["started"])) for r in self.db.execute(
            "SELECT predicted, started, ended FROM attempts WHERE exit_code=0 AND predicted "
            "IS NOT NULL")]
        return {"samples": len(errors),
                "mean_abs_error_s": sum(errors) / len(errors) if errors else None}

    def jobs(self, active_only: bool = False) -> list[Job]:
        """Stored jobs as workload :class:`Job` s, in submission order; with
        ``active_only``, only those the control loop still schedules (a task
        queued or running, none failed or cancelled). The control loop asks
        every round, so it must not read the whole history each time."""
        from rlsched.workload import Task

        out = []
        for j in self.db.execute(ACTIVE_JOBS if active_only else "SELECT * FROM jobs ORDER BY id"):
            tasks = []
            for t in self.db.execute("SELECT spec FROM tasks WHERE job=? ORDER BY position",
                                     (j["id"],)):
                spec = json.loads(t["spec"])
                spec["parents"] = tuple(spec["parents"])
                spec["data_from_parents"] = tuple(spec["data_from_parents"])
                tasks.append(Task(**spec))
            out.append(Job(j["name"], tuple(tasks), j["submitted"], j["priority"], j["deadline"]))
        return out


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
    if "failed" in states:
        return "failed"
    if states == {"done"}:
        return "done"
    if "running" in states:
        return "running"
    return "queued"
