"""Job files: the YAML a user writes and submits to the live scheduler.

A file holds one job, or several under ``jobs:``::

    name: resnet-sweep        # unique per job
    priority: 2               # optional, default 1 (weight in weighted JCT)
    deadline: 2h              # optional, after arrival
    arrival: 0                # optional, simulation only
    tasks:
      - id: prepare
        command: python prepare.py
        gpus: 0               # CPU-only task
        estimate: 5m
      - id: train
        command: python train.py --lr 0.1
        after: [prepare]      # parents: tasks that must succeed first
        gpu_memory: 12GiB     # number (GiB) or string with B/KiB/MiB/GiB/TiB
        estimate: 40m         # seconds, or with s/m/h; optional for the live runtime
        kind: compute         # compute | memory (which device speed applies)
        env: {SEED: "1"}
        workdir: ~/exp
        retries: 2
        timeout: 3h
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rlsched.errors import InputError
from rlsched.sources._io import files_in, read_yaml
from rlsched.workload import Instance, Job, Task, validate_instance

_DURATION = re.compile(r"^\s*(-?[0-9]*\.?[0-9]+)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNITS_S = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS_GIB = {None: 1.0, "b": 2.0**-30, "kb": 1e3 / 2**30, "kib": 2.0**-20, "mb": 1e6 / 2**30,
              "mib": 2.0**-10, "gb": 1e9 / 2**30, "gib": 1.0, "tb": 1e12 / 2**30, "tib": 2.0**10}

_TASK_KEYS = {"id", "command", "after", "gpu_memory", "gpus", "estimate", "work", "kind", "env",
              "workdir", "retries", "timeout"}
_JOB_KEYS = {"name", "priority", "deadline", "arrival", "tasks"}


def load_jobfiles(path: str | Path, *, require_work: bool = True) -> list[Instance]:
    """One instance per YAML file under ``path`` (all jobs of a file together)."""
    files = files_in(Path(path), (".yaml", ".yml"), f"jobs:{path}")
    return [load_jobfile(p, require_work=require_work) for p in files]


def load_jobfile(path: str | Path, *, require_work: bool = True) -> Instance:
    src = str(path)
    doc = read_yaml(Path(path))
    if isinstance(doc, dict) and "jobs" in doc:
        entries = doc["jobs"]
        if not isinstance(entries, list):
            raise InputError(src, "'jobs' must be a list of jobs")
    elif isinstance(doc, dict):
        entries = [doc]
    else:
        raise InputError(src, "a job file must be a mapping with 'name' and 'tasks' (or a 'jobs' list)")
    jobs = tuple(_job(e, src, i) for i, e in enumerate(entries))
    instance = Instance(name=Path(path).stem, jobs=jobs, source=src)
    validate_instance(instance, require_work=require_work)
    return instance


def parse_duration(value: Any, source: str, what: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"1.5h"``, ``"40m"``."""
    if isinstance(value, bool):
        raise InputError(source, f"{what}: {value!r} is not a duration")
    if isinstance(value, (int, float)):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise InputError(source, f"{what}: {value!r} is not a duration (seconds, or with s/m/h)")
    return float(m.group(1)) * _UNITS_S[(m.group(2) or "").lower() or None]


def parse_size_gib(value: Any, source: str, what: str) -> float:
    """GiB from ``12`` (GiB), ``"12GiB"``, ``"500MiB"``, ``"16GB"``."""
    if isinstance(value, bool):
        raise InputError(source, f"{what}: {value!r} is not a size")
    if isinstance(value, (int, float)):
        return float(value)
    m = _SIZE.match(str(value))
    if not m:
        raise InputError(source, f"{what}: {value!r} is not a size (GiB, or with B/MiB/GiB/...)")
    return float(m.group(1)) * _UNITS_GIB[(m.group(2) or "").lower() or None]


def _job(entry: Any, src: str, index: int) -> Job:
    if not isinstance(entry, dict):
        raise InputError(src, f"job #{index + 1} is not a mapping")
    name = str(entry.get("name", Path(src).stem if index == 0 else f"{Path(src).stem}-{index}"))
    where = f"job '{name}'"
    unknown = set(entry) - _JOB_KEYS
    if unknown:
        raise InputError(src, f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    tasks_raw = entry.get("tasks")
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise InputError(src, f"{where}: needs a non-empty 'tasks' list")
    tasks = tuple(_task(t, src, where, i) for i, t in enumerate(tasks_raw))
    deadline = entry.get("deadline")
    try:
        priority = float(entry.get("priority", 1.0))
    except (TypeError, ValueError):
        raise InputError(src, f"{where}: priority {entry.get('priority')!r} is not a number") from None
    return Job(
        name=name, tasks=tasks,
        arrival=parse_duration(entry.get("arrival", 0), src, f"{where} arrival"),
        priority=priority,
        deadline=None if deadline is None else parse_duration(deadline, src, f"{where} deadline"),
    )


def _task(raw: Any, src: str, where: str, index: int) -> Task:
    if not isinstance(raw, dict) or "id" not in raw:
        raise InputError(src, f"{where}: task #{index + 1} needs an 'id'")
    here = f"{where}, task '{raw['id']}'"
    unknown = set(raw) - _TASK_KEYS
    if unknown:
        raise InputError(src, f"{here}: unknown field(s) {', '.join(sorted(unknown))}")
    after = raw.get("after", [])
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list):
        raise InputError(src, f"{here}: 'after' must be a task id or a list of them")
    estimate = raw.get("estimate", raw.get("work"))
    env = raw.get("env") or {}
    if not isinstance(env, dict):
        raise InputError(src, f"{here}: 'env' must be a mapping")
    try:
        gpus = int(raw.get("gpus", 1))
        retries = int(raw.get("retries", 0))
    except (TypeError, ValueError):
        raise InputError(src, f"{here}: 'gpus' and 'retries' must be integers") from None
    if retries < 0:
        raise InputError(src, f"{here}: retries must be 0 or more, not {retries}")
    timeout = raw.get("timeout")
    return Task(
        id=str(raw["id"]),
        work=None if estimate is None else parse_duration(estimate, src, f"{here} estimate"),
        kind=str(raw.get("kind", "compute")),
        gpu_memory=parse_size_gib(raw.get("gpu_memory", 0), src, f"{here} gpu_memory"),
        gpus=gpus,
        parents=tuple(str(p) for p in after),
        command=None if raw.get("command") is None else str(raw["command"]),
        env={str(k): str(v) for k, v in env.items()},
        workdir=None if raw.get("workdir") is None else str(raw["workdir"]),
        retries=retries,
        timeout=None if timeout is None else parse_duration(timeout, src, f"{here} timeout"),
    )
