"""Your own pool's history as a workload: ``history:STATE_DIR``.

The store records every job's DAG, when it was submitted, each task's
estimate, and each attempt's device and runtime. Replayed, the jobs that
finished (every task done) become one instance:

* arrivals are the submission times, counted from the first job's;
* a task's true work is its successful attempt's runtime on the reference
  device: its seconds times the nominal speed, for its kind, of the GPU it
  ran on (:mod:`rlsched.live.history`), as the runtime model learns it;
* its estimate, category, memory, kind, parents and placement rules are
  what was submitted.

So ``rlsched evaluate --workload history:~/.local/state/rlsched --arrivals
trace`` runs every scheduler on the month the pool actually had, and
``rlsched export`` writes the same jobs as a job file with ``runtime:``
(``jobs:FILE`` replays it without the database). Jobs that failed, were
cancelled, or still run are left out.

A finished job's failed attempts are kept as what they were: time a task
held its GPUs and lost. The simulator has no model of a task that fails and
is retried, so each becomes a task of its own, ``ID.failed-K``, that runs as
long as that attempt did, on as many GPUs with the same memory, before the
task it was an attempt of (and after its parents), with the history key of
the task and ``.failed``, so that the runtime model does not learn a
failure's length as the task's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from rlsched.errors import InputError
from rlsched.live.history import speed_from_store
from rlsched.live.store import Store
from rlsched.runtime_model import history_key
from rlsched.sources.specs import WorkloadSource
from rlsched.workload import Instance, validate_instance


def load_history(state: str | Path) -> Instance:
    """The finished jobs of the store under ``state`` as one instance."""
    try:
        store = Store(Path(state).expanduser(), create=False)
    except InputError as e:  # said for --state; here the directory came in the SPEC
        if not e.problem.startswith("no rlsched state here"):
            raise
        raise InputError(f"history:{state}", "no rlsched state here: give the state "
                         "directory rlsched serve used (its --state)") from None
    speed = speed_from_store(store)
    took = {task: (device, ended - started) for task, device, started, ended in store.db.execute(
        "SELECT task, device, started, ended FROM attempts WHERE exit_code=0 AND ended IS NOT NULL "
        "ORDER BY ended")}
    lost: dict[int, list[tuple[int | None, float]]] = {}
    for task, device, started, ended in store.db.execute(
            "SELECT task, device, started, ended FROM attempts WHERE exit_code IS NOT 0 "
            "AND ended IS NOT NULL ORDER BY started, id"):
        lost.setdefault(task, []).append((device, max(ended - started, 0.0)))
    rows = {(r[0], r[1]): r[2] for r in store.db.execute(
        "SELECT j.name, t.task_id, t.id FROM tasks t JOIN jobs j ON t.job=j.id")}
    status = {j["name"]: j["state"] for j in store.status()["jobs"]}
    jobs = []
    for job in store.jobs():
        if status.get(job.name) != "done":
            continue
        tasks = []
        for t in job.tasks:
            row = rows[(job.name, t.id)]
            device, seconds = took[row]
            scale = speed(device, t.kind) if t.gpus else 1.0
            before = t.parents
            for k, (where, spent) in enumerate(lost.get(row, []), 1):
                failed = replace(t, id=f"{t.id}.failed-{k}", parents=before, command=None,
                                 work=spent * (speed(where, t.kind) if t.gpus else 1.0),
                                 estimate=None, retries=0,
                                 category=f"{history_key(job.name, t.id, t.category, t.command)}.failed")
                tasks.append(failed)
                before = (failed.id,)
            tasks.append(replace(t, work=seconds * scale, parents=before))
        jobs.append(replace(job, tasks=tuple(tasks)))
    if not jobs:
        raise InputError(f"history:{state}", "no finished job in this state yet: nothing to replay")
    first = min(j.arrival for j in jobs)
    instance = Instance("history", tuple(j.at(round(j.arrival - first, 6)) for j in jobs),
                        source=f"history:{state}")
    validate_instance(instance)
    return instance


def history_source(rest: str, spec: str) -> WorkloadSource:
    """The ``history:`` workload SPEC (registered by the command line)."""
    instance = load_history(rest)
    return WorkloadSource(spec, lambda seed: [instance], seeded=False)


def as_jobfile(instance: Instance) -> dict[str, Any]:
    """A replayed instance as a job-file document (``jobs:`` loads it back):
    each task's ``runtime`` is its reference-seconds, its ``estimate`` what
    was submitted."""
    out = []
    for job in instance.jobs:
        tasks = []
        for t in job.tasks:
            task: dict[str, Any] = {"id": t.id, "gpus": t.gpus, "kind": t.kind,
                                    "gpu_memory": t.gpu_memory, "runtime": t.work}
            for name in ("estimate", "category", "command", "workdir", "timeout"):
                if getattr(t, name) is not None:
                    task[name] = getattr(t, name)
            if t.parents:
                task["after"] = list(t.parents)
            if t.env:
                task["env"] = dict(t.env)
            if t.retries:
                task["retries"] = t.retries
            for name in ("gpus_allowed", "gpus_avoid"):
                if getattr(t, name):
                    task[name] = list(getattr(t, name))
            tasks.append(task)
        doc: dict[str, Any] = {"name": job.name, "arrival": job.arrival, "priority": job.priority,
                               "tasks": tasks}
        if job.deadline is not None:
            doc["deadline"] = job.deadline
        out.append(doc)
    return {"jobs": out}
