"""WfCommons WfFormat (1.4/1.5) workflow instances: real measured executions.

Runtimes are the measured ``runtimeInSeconds``; a task's category (its
name without an instance number) keys its runtime history; the data on an edge is the
total size of the files the parent writes and the child reads. GPU attributes
(kind, GPU memory) are not in the data: they are synthetic
(:mod:`rlsched.sources.synthetic_attrs`), and reports say so.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl

from rlsched.errors import InputError
from rlsched.sources._io import files_in, read_json
from rlsched.sources.synthetic_attrs import synthetic_kind, synthetic_memory_gib
from rlsched.workload import Instance, Job, Task, validate_job

#: the instance number some WfFormat task names end with (``individuals_ID0000001``)
_INSTANCE_NUMBER = re.compile(r"_(ID)?[0-9]+$")


def family_of(path: str | Path) -> str:
    """The workflow family a WfCommons instance file belongs to, the first
    word of its name as WfInstances names them (``montage`` for
    ``montage-chameleon-2mass-01d-001.json``, ``bacass`` for an nf-core
    ``bacass-dirt02-001.json``): what a leave-family-out evaluation holds out."""
    return Path(path).name.split("-", 1)[0].lower()


def families(path: str | Path) -> list[str]:
    """The families of the WfFormat files under ``path``, sorted."""
    source = f"wfcommons:{path}"
    return sorted({family_of(p) for p in files_in(Path(path), (".json",), source)})


def load_wfcommons(spec: str | Path) -> list[Instance]:
    """One instance (one job) per WfFormat JSON file under ``PATH``, where
    ``spec`` is ``PATH``, ``PATH?family=A,B`` (only those families) or
    ``PATH?exclude=A,B`` (all but those): see :func:`family_of`."""
    path, kept = select_families(str(spec))
    source = f"wfcommons:{spec}"
    return [_load_file(p) for p in files_in(Path(path), (".json",), source)
            if family_of(p) in kept]


def select_families(spec: str) -> tuple[str, list[str]]:
    """``PATH`` and the families under it that ``PATH[?family=A,B|?exclude=A,B]``
    keeps, sorted; a family named that is not there, or a filter that keeps
    nothing, is an :class:`InputError` (a typo must not run on nothing)."""
    path, _, query = spec.partition("?")
    present = families(path)
    if not query:
        return path, present
    key, names = family_query(query, f"wfcommons:{spec}")
    missing = sorted(names - set(present))
    if missing:
        raise InputError(f"wfcommons:{spec}", f"no family {', '.join(missing)} in {path} "
                         f"(its families: {', '.join(present)})")
    kept = [f for f in present if (f in names) == (key == "family")]
    if not kept:
        raise InputError(f"wfcommons:{spec}", f"the filter leaves no family of {path}")
    return path, kept


def family_query(query: str, source: str) -> tuple[str, set[str]]:
    """``("family" or "exclude", the family names)`` of a query
    ``family=A,B`` or ``exclude=A,B``; :class:`InputError` (naming
    ``source``) for anything else."""
    pairs = parse_qsl(query, keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] not in ("family", "exclude"):
        raise InputError(source, "filter by family=A,B or by exclude=A,B (one of them, once)")
    ((key, value),) = pairs
    names = {n.strip().lower() for n in value.split(",") if n.strip()}
    if not names:
        raise InputError(source, f"{key}= names no family")
    return key, names


def _load_file(path: Path) -> Instance:
    src = str(path)
    doc = read_json(path)
    try:
        wf = doc["workflow"]
        spec_tasks = wf["specification"]["tasks"]
        files = {f["id"]: float(f.get("sizeInBytes", 0)) for f in wf["specification"].get("files", [])}
        executed = {t["id"]: t for t in wf["execution"]["tasks"]}
    except (KeyError, TypeError) as e:
        raise InputError(src, f"not a WfFormat workflow (missing {e})") from None
    by_id = {t["id"]: t for t in spec_tasks if isinstance(t, dict) and "id" in t}
    tasks = []
    for st in spec_tasks:
        tid = st.get("id") if isinstance(st, dict) else None
        if tid is None:
            raise InputError(src, f"a task has no 'id': {str(st)[:60]}")
        ex = executed.get(tid)
        if ex is None or "runtimeInSeconds" not in ex:
            raise InputError(src, f"task '{tid}': missing runtime (no execution record)")
        try:
            runtime = float(ex["runtimeInSeconds"])
        except (TypeError, ValueError):
            raise InputError(
                src, f"task '{tid}': runtime {ex['runtimeInSeconds']!r} is not a number") from None
        parents = tuple(st.get("parents", ()))
        inputs = set(st.get("inputFiles", ()))
        data = tuple(
            sum(files.get(f, 0.0) for f in by_id[p].get("outputFiles", ()) if f in inputs)
            if p in by_id else 0.0
            for p in parents
        )
        name = st.get("name") or tid.rsplit("_", 1)[0]
        tasks.append(Task(
            id=tid, work=runtime, kind=synthetic_kind(name),
            gpu_memory=synthetic_memory_gib(name, ex.get("memoryInBytes")),
            gpus=1, parents=parents, data_from_parents=data,
            category=_INSTANCE_NUMBER.sub("", name) or name,
        ))
    job = Job(name=path.stem, tasks=tuple(tasks))
    validate_job(job, src)
    return Instance(name=path.stem, jobs=(job,), source=src)
