"""Gavel's deep-learning job traces (``trace:gavel:PATH``): Microsoft Philly's
arrivals and gang sizes, with throughputs measured per GPU model.

Gavel (Narayanan et al., OSDI 2020) replays Philly virtual clusters' jobs as
26 model/batch-size types, and ships the steps per second it measured for
each type on K80, P100 and V100 GPUs, alone and beside every other type.
A job here is one task of ``gpus: scale_factor`` (a gang when above 1):

* **Runtimes.** On each measured model it runs ``steps / throughput``
  seconds. Its work (reference-seconds, what estimates and the runtime model
  speak of) is its V100 runtime times the catalogue's V100 speed, and its
  own speed on each measured model is work over runtime there
  (:attr:`rlsched.workload.Task.speeds`): a ResNet-50 is 7x faster on a V100
  than on a K80, a Transformer much less. On other models its speed is the
  catalogue's.
* **Co-location.** Two 1-GPU jobs sharing a device run at the throughputs
  Gavel measured for that pair on that model (as fractions of their speeds
  alone, at most 1: a measurement above the job's alone is read as equal to
  it); other sharing follows the pool's ``interference``, and so does a pair
  Gavel measured at 0 (it could not run together: Gavel's jobs declare no
  memory, so nothing here stops the two from sharing).
* **Filters**, documented in the README, to fit a workstation: ``max_gpus=N``
  keeps jobs of at most N GPUs (default 4, a workstation's; Gavel measured up
  to 8);
  ``window=START,END`` keeps the jobs arriving in that span of the trace's
  clock (seconds, or with s/m/h/d); ``compress=F`` divides arrival times
  (from the first kept job) by F; ``jobs=N`` keeps the first N. A job whose
  size Gavel did not measure for its type is left out. What was kept and
  left out is reported in ``evaluate``'s notes.
* Not used: Gavel's ``*_unconsolidated`` throughputs (a gang spread over
  servers). They are often above the consolidated ones (ResNet-50 at batch
  64 on 4 V100s: 11.1 steps/s spread, 9.5 on one server), the opposite of
  what spreading a gang does, so a gang across hosts runs at the pool's
  ``across_hosts`` instead.
  Gavel's traces give no GPU memory: every job declares 0 GiB.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from rlsched.errors import InputError
from rlsched.pool import CATALOGUE
from rlsched.sources._io import files_in, read_json, read_text
from rlsched.sources.jobfile import parse_duration
from rlsched.workload import Instance, Job, Task

#: Gavel's GPU types as the catalogue's models
MODELS = {"k80": ("k80",), "p100": ("p100",), "v100": ("v100-16gb", "v100-32gb")}
#: the model whose runtime anchors a job's work
ANCHOR = "v100"
THROUGHPUTS = "simulation_throughputs.json"
#: the largest gang Gavel measured throughputs for
MEASURED_GPUS = 8
#: the largest gang kept unless told: a workstation's (more needs ?max_gpus=)
DEFAULT_MAX_GPUS = 4


@dataclass(frozen=True)
class Options:
    max_gpus: int = DEFAULT_MAX_GPUS
    window: tuple[float, float] = (-math.inf, math.inf)
    compress: float = 1.0
    jobs: int | None = None
    throughputs: Path | None = None


def load_gavel(rest: str) -> tuple[list[Instance], str]:
    """The instances of ``PATH[?options]`` (a ``.trace`` file or a folder of
    them), one per trace file, and a note of what was kept."""
    path_text, _, query = rest.partition("?")
    source = f"trace:gavel:{rest}"
    options = _options(dict(parse_qsl(query, keep_blank_values=True)), source)
    path = Path(path_text).expanduser()
    traces = files_in(path, (".trace",), source)
    table_path = options.throughputs or (path if path.is_dir() else path.parent) / THROUGHPUTS
    table = read_json(table_path)
    if not isinstance(table, dict) or ANCHOR not in table:
        raise InputError(str(table_path), f"not a Gavel throughput table (no '{ANCHOR}' entry)")
    types = {ast.literal_eval(k)[0] for k in table[ANCHOR]}
    instances, kept, total, too_big, unmeasured = [], 0, 0, 0, 0
    for trace in traces:
        jobs, counts = _jobs(trace, table, types, options)
        total += counts[0]
        too_big += counts[1]
        unmeasured += counts[2]
        kept += len(jobs)
        if jobs:
            instances.append(Instance(trace.stem, tuple(jobs), str(trace),
                                      colocation=_colocation(table, jobs)))
    if not instances:
        raise InputError(source, "no job of the trace is left after its filters")
    note = (f"Gavel traces ({', '.join(t.stem for t in traces)}): {kept} of {total} jobs kept; "
            f"{too_big} take more than {options.max_gpus} GPUs, {unmeasured} are of a size "
            "Gavel did not measure for their type, the rest fell outside window= or jobs=.")
    return instances, note


def _options(params: dict[str, str], source: str) -> Options:
    known = {"max_gpus", "window", "compress", "jobs", "throughputs"}
    for key in params:
        if key not in known:
            raise InputError(source, f"unknown option '{key}' (known: {', '.join(sorted(known))})")
    try:
        max_gpus = int(params.get("max_gpus", DEFAULT_MAX_GPUS))
        compress = float(params.get("compress", 1.0))
        jobs = int(params["jobs"]) if "jobs" in params else None
    except ValueError as e:
        raise InputError(source, f"bad option value ({e})") from None
    if max_gpus < 1 or not compress > 0 or not math.isfinite(compress) or \
            (jobs is not None and jobs < 1):
        raise InputError(source, "max_gpus and jobs must be at least 1, compress above 0")
    window = (-math.inf, math.inf)
    if "window" in params:
        start, sep, end = params["window"].partition(",")
        if not sep:
            raise InputError(source, "window= takes START,END")
        window = (parse_duration(start, source, "window start"),
                  parse_duration(end, source, "window end"))
    throughputs = Path(params["throughputs"]).expanduser() if "throughputs" in params else None
    return Options(max_gpus, window, compress, jobs, throughputs)


def _jobs(trace: Path, table: dict[str, Any], types: set[str], options: Options
          ) -> tuple[list[Job], tuple[int, int, int]]:
    """A trace's jobs that pass the filters, and ``(lines, too big, unmeasured)``."""
    out: list[Job] = []
    lines = [line for line in read_text(trace).splitlines() if line.strip()]
    too_big = unmeasured = 0
    first: float | None = None
    anchor_speed = CATALOGUE[MODELS[ANCHOR][0]].compute_speed
    for number, line in enumerate(lines, 1):
        job_type, steps, arrival, scale = _fields(line, trace, number, types)
        if scale > options.max_gpus:
            too_big += 1
            continue
        key = str((job_type, scale))
        measured = {gavel: table[gavel][key]["null"] for gavel in MODELS
                    if gavel in table and key in table[gavel]}
        if ANCHOR not in measured or any(not v > 0 for v in measured.values()):
            unmeasured += 1
            continue
        if not options.window[0] <= arrival <= options.window[1]:
            continue
        if options.jobs is not None and len(out) >= options.jobs:
            continue
        first = arrival if first is None else first
        runtime = {gavel: steps / throughput for gavel, throughput in measured.items()}
        work = runtime[ANCHOR] * anchor_speed
        speeds = {name: work / runtime[gavel] for gavel in runtime for name in MODELS[gavel]}
        task = Task("train", round(work, 3), "compute", 0.0, gpus=scale, category=job_type,
                    speeds=speeds)
        out.append(Job(f"{trace.stem}-{number}", (task,),
                       arrival=round((arrival - first) / options.compress, 6)))
    return out, (len(lines), too_big, unmeasured)


def _fields(line: str, trace: Path, number: int, types: set[str]) -> tuple[str, int, float, int]:
    """A trace line's job type, total steps, arrival and scale factor."""
    parts = line.split("\t")
    where = f"line {number}"
    if len(parts) != 7:
        raise InputError(str(trace), f"{where}: {len(parts)} tab-separated fields, not 7")
    job_type = parts[0]
    if job_type not in types:
        raise InputError(str(trace), f"{where}: job type '{job_type}' is not in the "
                         "throughput table")
    try:
        steps, arrival, scale = int(parts[4]), float(parts[5]), int(parts[6])
    except ValueError:
        raise InputError(str(trace), f"{where}: steps, arrival and scale factor must be "
                         "numbers") from None
    if steps < 0:
        raise InputError(str(trace), f"{where}: negative step count {steps}")
    if not math.isfinite(arrival) or arrival < 0 or scale < 1:
        raise InputError(str(trace), f"{where}: arrival must be 0 or more and the scale "
                         "factor at least 1")
    return job_type, steps, arrival, scale


def _colocation(table: dict[str, Any], jobs: list[Job]
                ) -> dict[tuple[str, str, str], tuple[float, float]]:
    """The measured pairs among the 1-GPU job types of ``jobs``, per model."""
    present = sorted({t.category for j in jobs for t in j.tasks if t.gpus == 1 and t.category})
    out: dict[tuple[str, str, str], tuple[float, float]] = {}
    for gavel, names in MODELS.items():
        rows = table.get(gavel, {})
        for a in present:
            row = rows.get(str((a, 1)), {})
            alone_a = row.get("null")
            for b in present:
                pair = row.get(str((b, 1)))
                alone_b = rows.get(str((b, 1)), {}).get("null")
                if not pair or not alone_a or not alone_b or not (pair[0] > 0 and pair[1] > 0):
                    continue  # unmeasured, or 0: the pair did not run together
                fa, fb = min(pair[0] / alone_a, 1.0), min(pair[1] / alone_b, 1.0)
                for name in names:
                    out[(name, a, b)] = (fa, fb)
    return out
