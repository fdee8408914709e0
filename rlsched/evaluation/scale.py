"""``rlsched bench scale``: how a scheduling decision's cost grows with the
queue and the pool, as JSON.

Each cell runs one batch episode of a layered synthetic workload (100 tasks
per job, so ``tasks / 100`` jobs, all arriving at once: the ready queue is as
long as it gets) on ``identical:N``, one scheduler, under a wall-clock limit.
A cell that hits the limit is recorded as such, with the decisions it made
until then, and the bigger cells of that scheduler at that pool size are
skipped (they would only hit it again). A cell that took under a second is
run again, up to five times, and its run of median CPU time reported
(:func:`timed_cell`). Rates are per CPU-second as well as per wall second;
the growth exponent of a scheduler at one pool size is the slope of log CPU
time against log tasks over its finished cells (CPU time: steadier on a
shared machine), and 1 means a decision costs the same at every queue
length. The table and the ratios read the CPU-time rates.

The search schedulers (ga, sa) are left out: they spend a budget per plan
by design, so their cost is what they are told to spend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlsched.arrivals import batch
from rlsched.errors import InputError
from rlsched.estimates import EXACT, EstimateModel
from rlsched.native import compiled
from rlsched.pool import identical_pool
from rlsched.schedulers import SCHEDULERS, SEARCH_SCHEDULERS, is_oracle, make_scheduler
from rlsched.sim import Simulator
from rlsched.sources.synthetic import generate
from rlsched.workload import Instance

#: every heuristic (the search schedulers spend a budget by design)
HEURISTICS = tuple(s for s in SCHEDULERS if s not in SEARCH_SCHEDULERS)
DEFAULT_SCHEDULERS = (*HEURISTICS, "rl:checkpoints/default.zip")
DEFAULT_TASKS = (1000, 4000, 16000, 64000)
DEFAULT_DEVICES = (8, 64, 512)
TASKS_PER_JOB = 100
#: decisions between two looks at the clock
_CHECK_EVERY = 64
#: a short cell is run again until its runs took this many seconds (see :func:`timed_cell`)
MIN_CELL_S = 1.0
#: and at most this many times
MAX_RUNS = 5


def scale_instance(tasks: int, seed: int = 0) -> Instance:
    """``tasks`` tasks in ``tasks / 100`` layered jobs, all arriving at once."""
    jobs = max(1, tasks // TASKS_PER_JOB)
    return batch(generate("layered", {"jobs": str(jobs), "tasks": str(TASKS_PER_JOB)},
                          seed, "scale"))


def timed_episode(instance: Instance, devices: int, scheduler: str, seed: int,
                  estimates: EstimateModel, limit_s: float) -> dict[str, Any]:
    """One episode under a wall-clock limit: decisions (placements, as ``bench
    sim`` counts them), seconds, and whether it finished; ``calls`` counts the
    scheduler's answers (some place nothing), with their median latency. The
    clock includes the simulator's work, since a scheduler is only as fast as
    the loop that feeds it."""
    sched = make_scheduler(scheduler)
    sched.reset(seed)
    pool = identical_pool(devices)
    sim = Simulator(instance, pool, seed, None, EXACT if is_oracle(sched) else estimates,
                    idle_only=sched.idle_only, learns=sched.reads_beliefs)
    latencies: list[float] = []
    t0, c0 = time.perf_counter(), time.process_time()
    view = sim.reset()
    finished = True
    while view is not None:
        d0 = time.perf_counter()
        placements = sched.decide(view)
        latencies.append(time.perf_counter() - d0)
        view = sim.step(placements)
        if len(latencies) % _CHECK_EVERY == 0 and time.perf_counter() - t0 > limit_s:
            finished = False
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    latencies.sort()
    calls, decisions = len(latencies), sim.decisions
    return {
        "finished": finished, "decisions": decisions, "wall_s": round(wall, 4),
        "decisions_per_s": round(decisions / wall, 1) if wall > 0 else None,
        "cpu_s": round(cpu, 6),
        "decisions_per_cpu_s": round(decisions / cpu, 1) if cpu > 0 else None,
        "calls": calls,
        "median_call_ms": round(1e3 * latencies[calls // 2], 4) if calls else None,
        **({"makespan": round(sim.now, 3)} if finished else {"limit_hit": True}),
    }


def timed_cell(instance: Instance, devices: int, scheduler: str, seed: int,
               estimates: EstimateModel, limit_s: float, min_s: float) -> dict[str, Any]:
    """:func:`timed_episode`, run again while the runs so far took under
    ``min_s`` of wall time (at most :data:`MAX_RUNS`): the run of median CPU
    time is the cell's, with ``runs`` saying how many there were. An episode
    of a few hundredths of a second timed once reads the machine's noise
    and a cold start more than the scheduler; the episodes are the same
    (deterministic), only their timings differ."""
    runs = [timed_episode(instance, devices, scheduler, seed, estimates, limit_s)]
    while runs[-1]["finished"] and len(runs) < MAX_RUNS and \
            sum(r["wall_s"] for r in runs) < min_s:
        runs.append(timed_episode(instance, devices, scheduler, seed, estimates, limit_s))
    if not runs[-1]["finished"]:
        return {**runs[-1], "runs": len(runs)}
    runs.sort(key=lambda r: r["cpu_s"])
    return {**runs[len(runs) // 2], "runs": len(runs)}


def growth_exponent(points: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of log time against log tasks (None under two
    points)."""
    if len(points) < 2:
        return None
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(max(w, 1e-9)) for _, w in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx, 3)


def bench_scale(schedulers: Sequence[str] = DEFAULT_SCHEDULERS,
                tasks: Sequence[int] = DEFAULT_TASKS, devices: Sequence[int] = DEFAULT_DEVICES,
                limit_s: float = 120.0, seed: int = 0, estimates: str = "default",
                progress: Callable[[str], None] | None = None,
                min_s: float = MIN_CELL_S) -> dict[str, Any]:
    """Every scheduler over every ``tasks`` x ``devices`` cell; see the module."""
    knowledge = EstimateModel.parse(estimates)
    for name in schedulers:
        make_scheduler(name)  # a name that is no scheduler stops here, before any cell
    instances = {n: scale_instance(n, seed) for n in sorted(tasks)}
    cells: list[dict[str, Any]] = []
    growth: dict[str, dict[str, float | None]] = {}
    for name in schedulers:
        growth[name] = {}
        for g in devices:
            points: list[tuple[int, float]] = []
            skipped = False
            for n in sorted(tasks):
                cell: dict[str, Any] = {"scheduler": name, "tasks": instances[n].n_tasks,
                                        "devices": g}
                if skipped:
                    cell.update(finished=False, skipped=True)
                else:
                    try:
                        cell.update(timed_cell(instances[n], g, name, seed, knowledge,
                                               limit_s, min_s))
                    except InputError as e:  # such as a policy built for fewer devices
                        cell.update(finished=False, error=e.problem)
                        skipped = True
                        cells.append(cell)
                        if progress is not None:
                            progress(_line(cell))
                        continue
                    if cell["finished"]:
                        points.append((cell["tasks"], cell["cpu_s"]))
                    else:
                        skipped = True
                cells.append(cell)
                if progress is not None:
                    progress(_line(cell))
            growth[name][str(g)] = growth_exponent(points)
    return {
        "workload": f"synthetic:layered, {TASKS_PER_JOB} tasks per job, batch",
        "pools": [f"identical:{g}" for g in devices], "estimates": knowledge.spec,
        "limit_s": limit_s, "min_cell_s": min_s, "seed": seed, "cells": cells,
        "growth_exponent": growth, "ratios": _ratios(cells),
        "compiled": compiled(),  # the simulator built by mypyc (rlsched/native.py), or its source
    }


def label(scheduler: str) -> str:
    """A short name: ``rl:checkpoints/default.zip`` is ``rl:default``."""
    return f"rl:{Path(scheduler[3:]).stem}" if scheduler.startswith("rl:") else scheduler


def _line(cell: dict[str, Any]) -> str:
    head = f"{label(cell['scheduler']):>10} {cell['tasks']:>6} tasks {cell['devices']:>4} GPUs"
    if cell.get("skipped"):
        return f"{head}: skipped (a smaller cell hit the limit or could not run)"
    if "error" in cell:
        return f"{head}: not run ({cell['error']})"
    state = "" if cell["finished"] else " (limit hit)"
    runs = f", median of {cell['runs']} runs" if cell.get("runs", 1) > 1 else ""
    rate = cell["decisions_per_cpu_s"]  # None where the CPU clock read no time at all
    return (f"{head}: {'-' if rate is None else f'{rate:,.1f}':>9} decisions/CPU-s, "
            f"{cell['cpu_s']:.2f} CPU-s{runs}{state}")


def _ratios(cells: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per scheduler: decisions/s at the most tasks over the fewest, at each
    pool size, and at the most GPUs over the fewest, at each task count
    (None where a cell did not finish)."""
    rate = {(c["scheduler"], c["tasks"], c["devices"]): c.get("decisions_per_cpu_s")
            for c in cells if c.get("finished")}
    names = dict.fromkeys(c["scheduler"] for c in cells)
    ns = sorted({c["tasks"] for c in cells})
    gs = sorted({c["devices"] for c in cells})
    out: dict[str, dict[str, float | None]] = {}
    for s in names:
        out[s] = {}
        for g in gs:
            a, b = rate.get((s, ns[0], g)), rate.get((s, ns[-1], g))
            out[s][f"tasks_{ns[-1]}_over_{ns[0]}_at_{g}_gpus"] = \
                round(b / a, 3) if a and b else None
        for n in ns:
            a, b = rate.get((s, n, gs[0])), rate.get((s, n, gs[-1]))
            out[s][f"gpus_{gs[-1]}_over_{gs[0]}_at_{n}_tasks"] = \
                round(b / a, 3) if a and b else None
    return out


def plot_scale(doc: dict[str, Any], directory: Path) -> Path:
    """CPU time against tasks, log-log, one panel per pool size (what the
    growth exponents fit); a cell that hit the limit is an open marker at
    the time it had run."""
    from rlsched.evaluation.plots import _plt

    plt = _plt()
    gs = sorted({c["devices"] for c in doc["cells"]})
    names = list(dict.fromkeys(c["scheduler"] for c in doc["cells"]))
    fig, axes = plt.subplots(1, len(gs), figsize=(5 * len(gs), 4.2), squeeze=False,
                             sharey=True)
    cmap = plt.get_cmap("tab10")
    for ax, g in zip(axes[0], gs):
        for i, s in enumerate(names):
            mine = [c for c in doc["cells"] if c["scheduler"] == s and c["devices"] == g]
            done = [(c["tasks"], c["cpu_s"]) for c in mine if c.get("finished")]
            hit = [(c["tasks"], c["cpu_s"]) for c in mine if c.get("limit_hit")]
            if done:
                ax.plot(*zip(*done), marker="o", color=cmap(i % 10), label=label(s))
            if hit:  # labelled here only if it has no finished cell to carry the name
                ax.plot(*zip(*hit), marker="o", fillstyle="none", linestyle="none",
                        color=cmap(i % 10), label=None if done else label(s))
        times = [c["cpu_s"] for c in doc["cells"] if c["devices"] == g and c.get("finished")]
        ns = sorted({c["tasks"] for c in doc["cells"]})
        if times and len(ns) > 1:  # a guide of slope 1: a decision's cost flat in the queue
            ax.plot([ns[0], ns[-1]], [min(times), min(times) * ns[-1] / ns[0]], color="grey",
                    linewidth=0.8, linestyle="--", label="slope 1")
        ax.axhline(doc["limit_s"], color="grey", linewidth=0.6, linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"identical:{g}")
        ax.set_xlabel("tasks (batch)")
    axes[0][0].set_ylabel("episode CPU time (s)")
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for h, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, h)
    fig.legend(list(handles.values()), list(handles), fontsize=8, loc="center right")
    fig.subplots_adjust(right=0.86)
    fig.suptitle("bench scale: open markers hit the time limit (dotted)")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "scale.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown(doc: dict[str, Any]) -> str:
    """The table of :func:`bench_scale`: a row per scheduler, thousands of
    decisions per CPU-second per cell (``limit``: stopped at the time limit,
    with the rate it had; ``-``: skipped or not run), then the growth
    exponent at each pool size."""
    cells = {(c["scheduler"], c["tasks"], c["devices"]): c for c in doc["cells"]}
    names = list(dict.fromkeys(c["scheduler"] for c in doc["cells"]))
    ns = sorted({c["tasks"] for c in doc["cells"]})
    gs = sorted({c["devices"] for c in doc["cells"]})
    head = [f"{g} GPUs, {n // 1000 if n >= 1000 else n}{'k' if n >= 1000 else ''}"
            for g in gs for n in ns]
    lines = ["| scheduler | " + " | ".join(head) + " | " +
             " | ".join(f"exponent, {g} GPUs" for g in gs) + " |",
             "| --- |" + " ---: |" * (len(head) + len(gs))]
    for s in names:
        row = []
        for g in gs:
            for n in ns:
                c = cells.get((s, n, g))
                if c is None or c.get("skipped") or "error" in c or \
                        c.get("decisions_per_cpu_s") is None:
                    row.append("-")
                elif c["finished"]:
                    row.append(f"{c['decisions_per_cpu_s'] / 1000:.1f}k")
                else:
                    row.append(f"limit ({c['decisions_per_cpu_s'] / 1000:.2f}k)")
        exps = [doc["growth_exponent"][s].get(str(g)) for g in gs]
        row += ["-" if e is None else f"{e:.2f}" for e in exps]
        lines.append(f"| {label(s)} | " + " | ".join(row) + " |")
    return "\n".join(lines)
