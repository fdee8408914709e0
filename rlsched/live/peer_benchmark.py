"""``rlsched bench peers``: rlsched against the spoolers people use today, live,
on the same jobs.

Every system runs the same seeded *stream* of stub jobs from a fresh state,
all queued at its start. A stub is a small shell script: it reads its GPU
from ``CUDA_VISIBLE_DEVICES``, sleeps its work divided by that GPU's speed in
the pool, and logs when it started and ended. Two stubs given one GPU take
turns on it (a lock per GPU), so a GPU shared is never a GPU doubled, and
placement matters as it does on real cards.

Systems:

* ``task-spooler`` (Debian's ``tsp``, 4 slots; pipelines through ``-D``),
  on identical pools only: it picks no GPU, so a stub cannot know its speed;
* ``simple_gpu_scheduler`` (``pip install 'rlsched[peers]'``), one GPU per
  command, no dependencies: independent jobs only;
* each plain, in submission order, and ``sorted``, fed in the order of the
  estimates rlsched is given (a job's total): what a user who sorts their
  own queue gets. Without estimates there is nothing to sort by;
* ``rlsched serve`` with each scheduler asked for, defaults and all.

A job's JCT is its last stub's end minus the system's start (the moment its
process was launched, its start-up included). ``first_start_s`` is when the
first stub started (rlsched's bytecode written first, as an install
does); ``median_gap_ms`` the median, over the stubs' ends while
work was still queued, of the time to the next stub's start.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import numpy as np

#: the streams, each ``name -> (rng, scale, estimates) -> jobs``
STREAMS = ("independent", "pipelines", "repeats")
#: pools: four GPUs of one speed, and two fast with two three times slower
POOLS = {"fake:4": (1.0, 1.0, 1.0, 1.0), "mixed": (1.0, 1.0, 1 / 3, 1 / 3)}
#: the cells run by default: ``(pool, stream, estimates)``
DEFAULT_CELLS = (("fake:4", "independent", "noisy"), ("fake:4", "pipelines", "noisy"),
                 ("mixed", "repeats", "noisy"), ("mixed", "repeats", "none"))
#: the rlsched schedulers run by default (``serve``'s default first)
DEFAULT_SCHEDULERS = ("share", "sjf", "fifo", "heft", "tetris")
#: log-space spread of a noisy estimate around the true work
ESTIMATE_SIGMA = 1.0
#: the kinds of job of the ``repeats`` stream and the work (s) of each
REPEAT_KINDS = {"tokenize": 0.3, "embed": 0.5, "finetune": 0.8, "sweep": 1.3,
                "distill": 2.0, "pretrain": 3.0}
#: how long one system may take on one cell before it is stopped
RUN_LIMIT_S = 300.0


@dataclass(frozen=True)
class StubTask:
    """One task of a stream: ``work`` seconds on a GPU of speed 1."""

    id: str
    work: float
    estimate: float | None
    after: tuple[str, ...] = ()
    category: str | None = None


@dataclass(frozen=True)
class StubJob:
    name: str
    tasks: tuple[StubTask, ...]

    @property
    def estimate(self) -> float:
        """What a user sorting the queue by hand sorts on: the job's total estimate."""
        return sum(t.estimate or 0.0 for t in self.tasks)


def _estimate(rng: np.random.Generator, work: float, estimates: str) -> float | None:
    return None if estimates == "none" else \
        round(work * float(rng.lognormal(0.0, ESTIMATE_SIGMA)), 2)


def make_stream(stream: str, seed: int, estimates: str = "noisy", scale: float = 1.0
                ) -> list[StubJob]:
    """The jobs of ``stream`` under ``seed``, in submission order.

    * ``independent``: 40 jobs of one task, work lognormal around 1.2 s;
    * ``pipelines``: 12 jobs of prepare (short) -> train (long) -> evaluate;
    * ``repeats``: 8 runs of each of six kinds of job (:data:`REPEAT_KINDS`),
      each run within 10% of its kind's work, shuffled; a noisy estimate is
      drawn once per kind, as a user reuses their job file.
    """
    import numpy as np

    rng = np.random.default_rng([seed, 7919])
    if stream == "independent":
        jobs = []
        for i in range(40):
            work = round(scale * float(np.clip(rng.lognormal(math.log(1.2), 0.8), 0.1, 8.0)), 3)
            jobs.append(StubJob(f"job-{i}", (StubTask("run", work, _estimate(rng, work, estimates)),)))
        return jobs
    if stream == "pipelines":
        jobs = []
        for i in range(12):
            works = (rng.uniform(0.2, 0.5), float(np.clip(rng.lognormal(math.log(2.5), 0.6), 0.5, 10)),
                     rng.uniform(0.3, 0.8))
            tasks: list[StubTask] = []
            parent: tuple[str, ...] = ()
            for name, work in zip(("prepare", "train", "evaluate"), works):
                w = round(scale * float(work), 3)
                tasks.append(StubTask(name, w, _estimate(rng, w, estimates), parent))
                parent = (name,)
            jobs.append(StubJob(f"pipeline-{i}", tuple(tasks)))
        return jobs
    if stream == "repeats":
        guess = {kind: _estimate(rng, scale * work, estimates) for kind, work in REPEAT_KINDS.items()}
        jobs = [StubJob(f"{kind}-{r}", (StubTask(
            "run", round(scale * work * float(rng.uniform(0.9, 1.1)), 3), guess[kind]),))
            for kind, work in REPEAT_KINDS.items() for r in range(8)]
        return [jobs[i] for i in rng.permutation(len(jobs))]
    raise ValueError(f"unknown stream {stream!r} (one of {', '.join(STREAMS)})")


# ------------------------------------------------------------------ the stub
def write_stub(directory: Path, speeds: tuple[float, ...]) -> Path:
    """The stub script for a pool of ``speeds``: ``sh stub.sh NAME WORK``."""
    cases = " ".join(f"{i}) speed={s:.6f};;" for i, s in enumerate(speeds))
    stub = directory / "stub.sh"
    stub.write_text(f"""#!/bin/sh
# a stand-in task: sleeps WORK seconds of a speed-1 GPU on the GPU it was given
# (no CUDA_VISIBLE_DEVICES: a spooler's slot, speed 1, device -1 in the log);
# stubs on one GPU take turns through its lock, and a slot's stub takes a lock
# of its own, so every system's stubs cost the same processes
name=$1; work=$2
dev=${{CUDA_VISIBLE_DEVICES:--1}}; dev=${{dev%%,*}}
case "$dev" in {cases} *) speed=1;; esac
seconds=$(awk -v w="$work" -v s="$speed" 'BEGIN {{printf "%.4f", w / s}}')
if [ "$dev" = -1 ]; then lock=slot-$$; else lock=gpu-$dev; fi
start=$(date +%s.%N)
flock {shlex.quote(str(directory))}/"$lock".lock sleep "$seconds"
end=$(date +%s.%N)
echo "$name $dev $start $end" >> {shlex.quote(str(directory / 'stubs.log'))}
""")
    return stub


def _command(stub: Path, job: StubJob, task: StubTask) -> str:
    return f"sh {shlex.quote(str(stub))} {job.name}/{task.id} {task.work}"


def read_log(directory: Path) -> list[tuple[str, int, float, float]]:
    """``(job/task, device, start, end)`` of each stub that ended."""
    path = directory / "stubs.log"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        name, dev, start, end = line.split()
        rows.append((name, int(dev), float(start), float(end)))
    return rows


def summarise(rows: list[tuple[str, int, float, float]], began: float, n_tasks: int
              ) -> dict[str, Any]:
    """The figures of one run from its stub log (see the module)."""
    import numpy as np

    if len(rows) < n_tasks:
        return {"tasks": len(rows), "error": f"{n_tasks - len(rows)} of {n_tasks} tasks never ran"}
    ends: dict[str, float] = {}
    for name, _, _, end in rows:
        job = name.split("/")[0]
        ends[job] = max(ends.get(job, -math.inf), end)
    starts = sorted(r[2] for r in rows)
    last_start = starts[-1]
    gaps = []
    for _, _, _, end in rows:
        if end < last_start:
            following = starts[int(np.searchsorted(starts, end))]
            gaps.append(following - end)
    return {"tasks": len(rows),
            "avg_jct_s": round(float(np.mean([e - began for e in ends.values()])), 3),
            "makespan_s": round(max(ends.values()) - began, 3),
            "first_start_s": round(starts[0] - began, 3),
            "median_gap_ms": round(float(np.median(gaps)) * 1000, 2) if gaps else None}


def ideal_avg_jct(jobs: list[StubJob], speeds: tuple[float, ...]) -> float:
    """Average JCT of a schedule that knows every true runtime and pays
    nothing to dispatch: a clairvoyant reference to read each system, and
    any target set for one, against. Not an optimum (a greedy rule; other
    schedules can beat it by a little), and not a lower bound, but a strong
    schedule:
    whenever a stub ends (and at the start), the ready tasks are taken in
    order of their job's true remaining work, least first, and each goes to
    the GPU where it would finish first; where that GPU is busy, the task
    waits for it, and the GPU is held for it while the next tasks choose.
    Every job is queued at time 0, as in the benchmark."""
    import heapq

    stage = [0] * len(jobs)
    left = [sum(t.work for t in j.tasks) for j in jobs]
    ready = set(range(len(jobs)))  # a job's next stage is ready (a stream's jobs are chains)
    free_at = [0.0] * len(speeds)
    ends: list[tuple[float, int, int]] = []  # (end, device, job)
    jct = [0.0] * len(jobs)
    now = 0.0
    while ready or ends:
        holds = list(free_at)
        for j in sorted(ready, key=lambda j: (left[j], j)):
            work = jobs[j].tasks[stage[j]].work
            d = min(range(len(speeds)),
                    key=lambda d: (max(holds[d], now) + work / speeds[d], d))
            finish = max(holds[d], now) + work / speeds[d]
            holds[d] = finish
            if free_at[d] <= now:  # idle: it starts
                free_at[d] = finish
                ready.discard(j)
                heapq.heappush(ends, (finish, d, j))
        now, _, j = heapq.heappop(ends)
        left[j] -= jobs[j].tasks[stage[j]].work
        stage[j] += 1
        if stage[j] < len(jobs[j].tasks):
            ready.add(j)
        else:
            jct[j] = now
    return sum(jct) / len(jct)


# ------------------------------------------------------------------ systems
def _wait_for(directory: Path, n_tasks: int, deadline: float) -> None:
    while len(read_log(directory)) < n_tasks and time.time() < deadline:
        time.sleep(0.05)


def run_task_spooler(directory: Path, stub: Path, jobs: list[StubJob], slots: int) -> float:
    """Queue ``jobs`` on a private task-spooler server; when it started."""
    env = dict(os.environ, TS_SOCKET=str(directory / "ts.socket"), TMPDIR=str(directory),
               TS_SLOTS=str(slots), TS_MAXFINISHED="10000")
    n_tasks = sum(len(j.tasks) for j in jobs)
    began = time.time()
    try:
        for job in jobs:
            ids: dict[str, str] = {}
            for task in job.tasks:
                dep = ["-D", ids[task.after[0]]] if task.after else []
                ids[task.id] = _tsp_submit(env, [*dep, "sh", "-c", _command(stub, job, task)])
        _wait_for(directory, n_tasks, began + RUN_LIMIT_S)
    finally:
        subprocess.run(["tsp", "-K"], env=env, capture_output=True)
    return began


def _tsp_submit(env: dict[str, str], args: list[str]) -> str:
    """Queue one command on task-spooler; its job id.

    Not with ``-n``: task-spooler 1.0.1 prints no job id under it, and
    ``-D ""`` then reads as ``-D 0``, so every dependent task would wait for
    the queue's first job instead of its parent. The stub writes nothing, so
    the stored output files stay empty."""
    out = subprocess.run(["tsp", *args], env=env, capture_output=True, text=True, check=True)
    job_id = out.stdout.strip()
    if not job_id.isdigit():
        raise subprocess.SubprocessError(f"tsp printed no job id ({out.stdout!r})")
    return job_id


def run_simple_gpu_scheduler(directory: Path, stub: Path, jobs: list[StubJob], gpus: int
                             ) -> float:
    """Feed ``jobs`` (one task each) to simple_gpu_scheduler; when it started."""
    lines = "".join(_command(stub, j, j.tasks[0]) + "\n" for j in jobs)
    began = time.time()
    subprocess.run([_peer_binary("simple_gpu_scheduler"), "--gpus", *map(str, range(gpus))],
                   input=lines, text=True, capture_output=True, timeout=RUN_LIMIT_S)
    return began


def run_rlsched(directory: Path, stub: Path, jobs: list[StubJob], pool: str,
                scheduler: str) -> float:
    """Submit ``jobs`` to a fresh store and serve them; when serve started."""
    state = directory / "state"
    doc = {"jobs": [{"name": j.name, "tasks": [
        {"id": t.id, "command": _command(stub, j, t), "gpu_memory": 1, "after": list(t.after),
         **({"estimate": t.estimate} if t.estimate is not None else {}),
         **({"category": t.category} if t.category else {})} for t in j.tasks]}
        for j in jobs]}
    (directory / "jobs.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    cli = [sys.executable, "-m", "rlsched"]
    subprocess.run([*cli, "submit", str(directory / "jobs.yaml"), "--state", str(state)],
                   check=True, capture_output=True)
    began = time.time()
    subprocess.run([*cli, "serve", "--state", str(state), "--pool", pool, "--scheduler",
                    scheduler, "--exit-when-idle"], check=True, capture_output=True,
                   timeout=RUN_LIMIT_S)
    return began


def _peer_binary(name: str) -> str:
    """A peer's executable: on PATH, or beside this Python (a virtual environment's)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    return found or name


def peers_available() -> dict[str, bool]:
    """Which peers are installed here."""
    return {"task-spooler": shutil.which("tsp") is not None,
            "simple_gpu_scheduler": shutil.which(_peer_binary("simple_gpu_scheduler")) is not None}


def _pool_spec(pool: str, directory: Path) -> str:
    """serve's ``--pool`` for a benchmark pool (the mixed one as a pool file)."""
    if pool != "mixed":
        return pool
    path = directory / "mixed.yaml"
    path.write_text(yaml.safe_dump({
        "name": "mixed",
        "models": {"fast-gpu": {"compute_speed": 1.0, "memory_speed": 1.0, "memory_gib": 24},
                   "slow-gpu": {"compute_speed": 1 / 3, "memory_speed": 1 / 3, "memory_gib": 24}},
        "devices": [{"model": "fast-gpu", "count": 2}, {"model": "slow-gpu", "count": 2}]}))
    return f"file:{path}"


def systems_for(pool: str, stream: str, estimates: str, schedulers: tuple[str, ...],
                with_peers: bool = True) -> list[tuple[str, str]]:
    """``(system, variant)`` of every run of one cell (see the module)."""
    orders = ("plain",) if estimates == "none" else ("plain", "sorted")
    peers = peers_available() if with_peers else {}
    out = []
    if peers.get("task-spooler") and len(set(POOLS[pool])) == 1:
        out += [("task-spooler", o) for o in orders]
    if peers.get("simple_gpu_scheduler") and stream != "pipelines":
        out += [("simple_gpu_scheduler", o) for o in orders]
    return out + [(f"rlsched {s}", "") for s in schedulers]


def run_cell(pool: str, stream: str, estimates: str, seed: int, schedulers: tuple[str, ...],
             scale: float = 1.0, progress: Callable[[str], None] | None = None,
             with_peers: bool = True) -> dict[str, Any]:
    """Every system on one ``(pool, stream, estimates)`` stream of ``seed``."""
    jobs = make_stream(stream, seed, estimates, scale)
    n_tasks = sum(len(j.tasks) for j in jobs)
    speeds = POOLS[pool]
    runs = []
    for system, variant in systems_for(pool, stream, estimates, schedulers, with_peers):
        if progress:
            progress(f"{pool} {stream} ({estimates} estimates), seed {seed}: {system} {variant}")
        ordered = sorted(jobs, key=lambda j: j.estimate) if variant == "sorted" else jobs
        with tempfile.TemporaryDirectory(prefix="rlsched-peers-") as tmp:
            directory = Path(tmp)
            stub = write_stub(directory, speeds)
            try:
                if system == "task-spooler":
                    began = run_task_spooler(directory, stub, ordered, len(speeds))
                elif system == "simple_gpu_scheduler":
                    began = run_simple_gpu_scheduler(directory, stub, ordered, len(speeds))
                else:
                    began = run_rlsched(directory, stub, ordered, _pool_spec(pool, directory),
                                        system.split(" ", 1)[1])
                figures = summarise(read_log(directory), began, n_tasks)
            except (subprocess.SubprocessError, OSError) as e:
                figures = {"error": f"{type(e).__name__}: {e}"}
        runs.append({"system": system, "variant": variant, **figures})
    return {"pool": pool, "stream": stream, "estimates": estimates, "seed": seed,
            "tasks": n_tasks, "ideal_avg_jct_s": round(ideal_avg_jct(jobs, speeds), 3),
            "runs": runs}


def ratios(cell: dict[str, Any], default: str) -> dict[str, float | None]:
    """rlsched's ``default`` scheduler against the best peer variant, and
    against task-spooler fed in estimate order, on average JCT; and the
    ideal schedule (:func:`ideal_avg_jct`) against the same two."""
    jct = {(r["system"], r["variant"]): r.get("avg_jct_s") for r in cell["runs"]}
    ours = jct.get((f"rlsched {default}", ""))
    peers = [v for (s, _), v in jct.items() if not s.startswith("rlsched") and v]
    sorted_ts = jct.get(("task-spooler", "sorted"))
    ideal = cell.get("ideal_avg_jct_s")
    return {"default_over_best_peer": round(ours / min(peers), 3) if ours and peers else None,
            "default_over_task_spooler_sorted":
                round(ours / sorted_ts, 3) if ours and sorted_ts else None,
            # what knowing every runtime gives against them (a reference, not a bound)
            "ideal_over_best_peer": round(ideal / min(peers), 3) if ideal and peers else None,
            "ideal_over_task_spooler_sorted":
                round(ideal / sorted_ts, 3) if ideal and sorted_ts else None}


def compile_rlsched() -> None:
    """Write rlsched's bytecode before any system is timed, as installing a
    package does: run from a checkout where ``PYTHONDONTWRITEBYTECODE`` is
    set, every ``serve`` would otherwise compile each of its modules at
    start-up (about 50 ms on a 2-core machine), a cost no installed copy pays."""
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parents[1]), quiet=1)


def bench_peers(cells: tuple[tuple[str, str, str], ...] = DEFAULT_CELLS, seeds: int = 1,
                seed_offset: int = 1, schedulers: tuple[str, ...] = DEFAULT_SCHEDULERS,
                scale: float = 1.0, progress: Callable[[str], None] | None = None
                ) -> dict[str, Any]:
    """The whole benchmark as one JSON-able document."""
    compile_rlsched()
    done = []
    for seed in range(seed_offset, seed_offset + seeds):
        for pool, stream, estimates in cells:
            cell = run_cell(pool, stream, estimates, seed, schedulers, scale, progress)
            cell.update(ratios(cell, schedulers[0]))
            done.append(cell)
    return {"peers": peers_available(), "default": schedulers[0], "scale": scale,
            "cells": done}


def rows(doc: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    """Table rows: cell, system, variant, avg JCT, makespan, first start, median gap."""
    for cell in doc["cells"]:
        label = f"{cell['pool']} {cell['stream']} ({cell['estimates']}), seed {cell['seed']}"
        for r in cell["runs"]:
            yield (label, r["system"], r["variant"], _fmt(r, "avg_jct_s"), _fmt(r, "makespan_s"),
                   _fmt(r, "first_start_s", 3), _fmt(r, "median_gap_ms", 1), r.get("error", ""))
        if cell.get("ideal_avg_jct_s") is not None:
            yield (label, "ideal", "exact runtimes, no dispatch cost",
                   _fmt(cell, "ideal_avg_jct_s"), "", "", "", "")


def _fmt(run: dict[str, Any], key: str, digits: int = 2) -> str:
    value = run.get(key)
    return "" if value is None else f"{value:.{digits}f}"


def plot(doc: dict[str, Any], directory: Path) -> Path:
    """One bar chart of average JCT per cell, peers and rlsched side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = doc["cells"]
    fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 4.2), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        runs = [r for r in cell["runs"] if r.get("avg_jct_s") is not None]
        labels = [f"{r['system']}\n{r['variant']}".strip() for r in runs]
        colours = ["#888888" if not r["system"].startswith("rlsched") else "#1f77b4" for r in runs]
        ax.barh(labels, [r["avg_jct_s"] for r in runs], color=colours)
        ax.invert_yaxis()
        if cell.get("ideal_avg_jct_s") is not None:
            ax.axvline(cell["ideal_avg_jct_s"], color="black", linestyle="--", linewidth=1,
                       label="ideal (exact runtimes,\nno dispatch cost)")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"{cell['pool']}, {cell['stream']}\n({cell['estimates']} estimates, "
                     f"seed {cell['seed']})", fontsize=9)
        ax.set_xlabel("average JCT (s)")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "peers.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    (directory / "peers.json").write_text(json.dumps(doc, indent=1))
    return out
