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
        command: torchrun --nproc_per_node=2 train.py --lr 0.1
        after: [prepare]      # parents: tasks that must succeed first
        gpus: 2               # GPUs at once, on one host (default 1): sees CUDA_VISIBLE_DEVICES=i,j
        gpu_memory: 12GiB     # per GPU: number (GiB) or string with B/KiB/MiB/GiB/TiB
        estimate: 40m         # your guess: seconds, or with s/m/h/d; optional
        runtime: 52m          # simulation only: the true runtime (default: the estimate)
        category: resnet-train  # optional: which past runs predict this one
        kind: compute         # compute | memory (which device speed applies)
        env: {SEED: "1"}
        workdir: ~/exp
        retries: 2
        timeout: 3h           # more than 0; leave it out for none
        gpus_avoid: [rtx-3090]  # or gpus_allowed: [0, a100-80gb] (a job's, or a task's)

Job names and task ids follow :data:`rlsched.workload.NAME_RULE`. Every
number must be finite: ``.inf`` and ``.nan`` are refused like any other value
that cannot be used.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from rlsched.errors import InputError
from rlsched.sources._io import files_in, read_yaml
from rlsched.workload import Instance, Job, Task, check_name, validate_instance

_DURATION = re.compile(r"^\s*(-?[0-9]*\.?[0-9]+)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNITS_S = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS_GIB = {None: 1.0, "b": 2.0**-30, "kb": 1e3 / 2**30, "kib": 2.0**-20, "mb": 1e6 / 2**30,
              "mib": 2.0**-10, "gb": 1e9 / 2**30, "gib": 1.0, "tb": 1e12 / 2**30, "tib": 2.0**10}

#: environment variable names a task may set
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TASK_KEYS = {"id", "command", "after", "gpu_memory", "gpus", "estimate", "runtime", "work",
              "kind", "env", "workdir", "retries", "timeout", "gpus_allowed", "gpus_avoid",
              "category"}
_JOB_KEYS = {"name", "priority", "deadline", "arrival", "tasks", "gpus_allowed", "gpus_avoid"}
#: a GPU model's name in a placement rule (``rtx-4090``, ``a100-80gb``)
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def load_jobfiles(path: str | Path, *, require_work: bool = True) -> list[Instance]:
    """One instance per YAML file under ``path`` (all jobs of a file together)."""
    files = files_in(Path(path), (".yaml", ".yml"), f"jobs:{path}")
    return [load_jobfile(p, require_work=require_work) for p in files]


def load_jobfile(path: str | Path, *, require_work: bool = True) -> Instance:
    src = str(path)
    doc = read_yaml(Path(path))
    if isinstance(doc, dict) and "jobs" in doc:
        entries = doc["jobs"]
        if len(doc) > 1:
            others = ", ".join(sorted(map(str, set(doc) - {"jobs"})))
            raise InputError(src, f"a file with 'jobs:' holds nothing else (found {others}); "
                             "put those fields inside each job")
        if not isinstance(entries, list):
            raise InputError(src, "'jobs' must be a list of jobs")
    elif isinstance(doc, dict):
        entries = [doc]
    else:
        raise InputError(src, "a job file must be a mapping with 'name' and 'tasks' (or a 'jobs' list)")
    if not entries:
        raise InputError(src, "'jobs' is empty: a job file needs at least one job")
    jobs = tuple(_job(e, src, i) for i, e in enumerate(entries))
    instance = Instance(name=Path(path).stem, jobs=jobs, source=src)
    validate_instance(instance, require_work=require_work)
    return instance


def parse_duration(value: Any, source: str, what: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"1.5h"``, ``"40m"``; never ``inf`` or ``nan``."""
    if isinstance(value, bool):
        raise InputError(source, f"{what}: {value!r} is not a duration")
    if isinstance(value, (int, float)):
        return _finite(value, source, what, "duration")
    m = _DURATION.match(str(value))
    if not m:
        raise InputError(source, f"{what}: {_shown(value)} is not a duration (seconds, or with s/m/h/d)")
    return _finite(float(m.group(1)) * _UNITS_S[(m.group(2) or "").lower() or None], source,
                   what, "duration")


def parse_size_gib(value: Any, source: str, what: str) -> float:
    """GiB from ``12`` (GiB), ``"12GiB"``, ``"500MiB"``, ``"16GB"``; never ``inf`` or ``nan``."""
    if isinstance(value, bool):
        raise InputError(source, f"{what}: {value!r} is not a size")
    if isinstance(value, (int, float)):
        return _finite(value, source, what, "size")
    m = _SIZE.match(str(value))
    if not m:
        raise InputError(source, f"{what}: {_shown(value)} is not a size (GiB, or with B/MiB/GiB/...)")
    return _finite(float(m.group(1)) * _UNITS_GIB[(m.group(2) or "").lower() or None], source,
                   what, "size")


def _finite(value: float, source: str, what: str, noun: str) -> float:
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise InputError(source, f"{what}: {_shown(value)} is not a finite {noun}")
    return number


def _integer(value: Any, source: str, what: str) -> int:
    """A whole number, written as one (``2``, ``2.0``, ``"2"``): not ``true``, not ``1.5``."""
    if isinstance(value, bool):
        raise InputError(source, f"{what}: {value!r} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,18}\s*", value):
        return int(value)
    raise InputError(source, f"{what}: {_shown(value)} is not a whole number")


def _shown(value: Any) -> str:
    """A value as an error message quotes it: short, on one line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(value: Any, source: str, what: str, numbers: bool = True) -> str:
    """A string the live runtime hands to the OS: no NUL byte, which no
    command line, path or environment can hold. Never a YAML boolean (``true``,
    ``yes`` and ``on`` are read as one, and would run as ``True``), and, where
    not ``numbers``, never a number either (a command is text)."""
    if isinstance(value, bool) or not (numbers or isinstance(value, str)):
        kind = "boolean" if isinstance(value, bool) else type(value).__name__
        raise InputError(source, f"{what} is text, but YAML read this one as the {kind} "
                         f"{value!r}: put it in quotes")
    text = str(value)
    if "\0" in text:
        raise InputError(source, f"{what} contains a NUL character")
    return text


def _job(entry: Any, src: str, index: int) -> Job:
    if not isinstance(entry, dict):
        raise InputError(src, f"job #{index + 1} is not a mapping")
    name = str(entry.get("name", Path(src).stem if index == 0 else f"{Path(src).stem}-{index}"))
    check_name(name, src, f"job #{index + 1}: job name")
    where = f"job '{name}'"
    unknown = set(entry) - _JOB_KEYS
    if unknown:
        raise InputError(src, f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    tasks_raw = entry.get("tasks")
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise InputError(src, f"{where}: needs a non-empty 'tasks' list")
    rules = tuple(_gpu_list(entry.get(k), src, f"{where} {k}") for k in ("gpus_allowed",
                                                                        "gpus_avoid"))
    tasks = tuple(_task(t, src, where, i, rules) for i, t in enumerate(tasks_raw))
    deadline = entry.get("deadline")
    priority = entry.get("priority", 1.0)
    try:
        if isinstance(priority, bool):
            raise ValueError
        priority = float(priority)
    except (TypeError, ValueError, OverflowError):
        raise InputError(src, f"{where}: priority {_shown(priority)} is not a number") from None
    if not math.isfinite(priority):
        raise InputError(src, f"{where}: priority {priority} is not a finite number")
    return Job(
        name=name, tasks=tasks,
        arrival=parse_duration(entry.get("arrival", 0), src, f"{where} arrival"),
        priority=priority,
        deadline=None if deadline is None else parse_duration(deadline, src, f"{where} deadline"),
    )


def _gpu_list(value: Any, source: str, what: str) -> tuple[int | str, ...]:
    """A placement rule: a list of GPU indices (0, 1, ...) and model names."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[int | str] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            out.append(item)
        elif isinstance(item, str) and _MODEL_NAME.fullmatch(item):
            out.append(item)
        else:
            raise InputError(source, f"{what}: {_shown(item)} is neither a GPU index (0, 1, ...) "
                             "nor a GPU model's name (rtx-4090, a100-80gb, ...)")
    return tuple(out)


def _task(raw: Any, src: str, where: str, index: int,
          job_rules: tuple[tuple[int | str, ...], ...] = ((), ())) -> Task:
    if not isinstance(raw, dict) or "id" not in raw:
        raise InputError(src, f"{where}: task #{index + 1} needs an 'id'")
    task_id = str(raw["id"])
    check_name(task_id, src, f"{where}: task id")
    here = f"{where}, task '{task_id}'"
    unknown = set(raw) - _TASK_KEYS
    if unknown:
        raise InputError(src, f"{here}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    after = raw.get("after", [])
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list):
        raise InputError(src, f"{here}: 'after' must be a task id or a list of them")
    estimate = None if raw.get("estimate") is None else parse_duration(
        raw["estimate"], src, f"{here} estimate")
    runtime = raw.get("runtime", raw.get("work"))  # ``work``: the older name
    runtime_s = None if runtime is None else parse_duration(runtime, src, f"{here} runtime")
    if "estimate" not in raw and "runtime" not in raw:
        estimate = runtime_s  # an older file's ``work`` was both
    category = raw.get("category")
    if category is not None:
        category = _text(category, src, f"{here}: category")
    env = raw.get("env") or {}
    if not isinstance(env, dict):
        raise InputError(src, f"{here}: 'env' must be a mapping")
    for key in env:
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise InputError(src, f"{here}: env name {_shown(key)} is not a variable name "
                             "(letters, digits and '_', not starting with a digit)")
    gpus = _integer(raw.get("gpus", 1), src, f"{here} gpus")
    retries = _integer(raw.get("retries", 0), src, f"{here} retries")
    if retries < 0:
        raise InputError(src, f"{here}: retries must be 0 or more, not {retries}")
    timeout = raw.get("timeout")
    timeout_s = None if timeout is None else parse_duration(timeout, src, f"{here} timeout")
    if timeout_s is not None and timeout_s <= 0:
        raise InputError(src, f"{here}: timeout must be more than 0 seconds, not {_shown(timeout)} "
                         "(leave it out for no timeout)")
    return Task(
        id=task_id,
        work=runtime_s if runtime_s is not None else estimate,
        estimate=estimate,
        category=category,
        kind=str(raw.get("kind", "compute")),
        gpu_memory=parse_size_gib(raw.get("gpu_memory", 0), src, f"{here} gpu_memory"),
        gpus=gpus,
        parents=tuple(str(p) for p in after),
        command=None if raw.get("command") is None else _text(raw["command"], src,
                                                               f"{here}: command", numbers=False),
        env={k: _text(v, src, f"{here}: env {k}") for k, v in env.items()},
        workdir=None if raw.get("workdir") is None else _text(raw["workdir"], src,
                                                               f"{here}: workdir"),
        retries=retries,
        timeout=timeout_s,
        # a task's own rule replaces its job's
        gpus_allowed=_gpu_list(raw["gpus_allowed"], src, f"{here} gpus_allowed")
        if "gpus_allowed" in raw else job_rules[0],
        gpus_avoid=_gpu_list(raw["gpus_avoid"], src, f"{here} gpus_avoid")
        if "gpus_avoid" in raw else job_rules[1],
    )
