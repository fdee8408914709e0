"""Benchmarks that print JSON: speed is measured here, never in unit tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlsched.arrivals import batch
from rlsched.evaluate import run_episode
from rlsched.pool import identical_pool, preset_pool
from rlsched.schedulers import make_scheduler
from rlsched.sources.synthetic import generate


def bench_sim(tasks: int = 1000, devices: int = 8, seed: int = 0, repeats: int = 3) -> dict[str, Any]:
    """Scheduling decisions per second of the simulator driven by fifo and by
    heft: a layered synthetic workload of ``tasks`` tasks (10 jobs, batch) on
    ``devices`` devices (the mixed ``lab-8`` preset for 8, identical otherwise).
    The best of ``repeats`` runs counts, since the machine may be shared."""
    pool = preset_pool("lab-8") if devices == 8 else identical_pool(devices)
    jobs = 10
    instance = batch(generate("layered", {"jobs": str(jobs), "tasks": str(tasks // jobs)},
                              seed, "bench"))
    out: dict[str, Any] = {
        "workload": f"synthetic:layered?jobs={jobs}&tasks={tasks // jobs}",
        "tasks": instance.n_tasks, "devices": len(pool),
        "pool": pool.name,
    }
    for name in ("fifo", "heft"):
        best = 0.0
        for _ in range(repeats):
            sched = make_scheduler(name)
            t0 = time.perf_counter()
            result = run_episode(instance, pool, sched, seed)
            wall = time.perf_counter() - t0
            best = max(best, result.decisions / wall)
        out[f"{name}_decisions_per_s"] = round(best, 1)
    return out



def bench_search(seconds: float = 2.0, seed: int = 0) -> dict[str, Any]:
    """Schedules evaluated per second by the genetic algorithm's population
    decoder: the 50-task STG graph rand0000 on 4 identical devices."""
    import numpy as np

    from rlsched.search import Budget, SearchProblem, genetic
    from rlsched.sim import Simulator
    from rlsched.sources.stg import load_stg

    path = Path(__file__).resolve().parent.parent / "workloads" / "stg" / "50" / "rand0000.stg"
    (instance,) = load_stg(path)
    view = Simulator(instance, identical_pool(4)).reset()
    problem = SearchProblem.from_view(view)
    keys, devices = problem.seeds(view)
    t0 = time.perf_counter()
    result = genetic(problem, keys, devices, np.random.default_rng(seed), Budget(seconds))
    wall = time.perf_counter() - t0
    return {"instance": "stg rand0000 (50 tasks)", "pool": "identical:4",
            "evaluations": result.evaluations, "seconds": round(wall, 3),
            "evaluations_per_s": round(result.evaluations / wall, 1)}


def bench_serve(tasks: int = 500, devices: int = 4, scheduler: str = "heft",
                history: int = 0) -> dict[str, Any]:
    """Scheduling latency of the live daemon: ``tasks`` tiny tasks (``true``) on
    ``fake:devices``, in chains of five, run to completion; the store already
    holds ``history`` finished jobs (a long-running daemon's past), which must
    not slow it down.

    A task's latency is from the moment it could start (its parents done and
    a GPU free for it) to its process starting; tasks per second is the
    throughput of the whole run.
    """
    import json
    import sqlite3
    import tempfile

    import numpy as np

    from rlsched.daemon import Daemon
    from rlsched.store import Store
    from rlsched.workload import Instance, Job, Task

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        per_job = 5
        jobs = tuple(Job(f"b{j}", tuple(Task(f"t{i}", 0.01, gpu_memory=1.0, command="true",
                                             parents=(f"t{i - 1}",) if i else ())
                                        for i in range(per_job)))
                     for j in range(tasks // per_job))
        if history:
            past = tuple(Job(f"past{j}", tuple(Task(f"t{i}", 0.01, gpu_memory=1.0, command="true",
                                                    parents=(f"t{i - 1}",) if i else ())
                                               for i in range(per_job)))
                         for j in range(history))
            store.submit([Instance("past", past, source="bench")])
            with store.transaction() as db:
                db.execute("INSERT INTO attempts (task, device, started, ended, exit_code) "
                           "SELECT id, 0, 0.0, 1.0, 0 FROM tasks")
                db.execute("UPDATE tasks SET state='done', attempts=1, device=0")
        store.submit([Instance("bench", jobs, source="bench")])
        daemon = Daemon(store, f"fake:{devices}", scheduler)
        t0 = time.perf_counter()
        daemon.run(tick=0.002, exit_when_idle=True)
        wall = time.perf_counter() - t0
        daemon.close()
        db = sqlite3.connect(store.path)
        rows = db.execute("SELECT a.task, a.device, a.started, a.ended, t.spec FROM attempts a "
                          "JOIN tasks t ON a.task=t.id JOIN jobs j ON t.job=j.id WHERE j.name "
                          "NOT LIKE 'past%' ORDER BY a.started").fetchall()
        ended = {r[0]: r[3] for r in rows}
        device_free: dict[int, float] = {}
        latencies = []
        first_start = min(r[2] for r in rows)
        for task, device, started, end, spec in rows:
            parent = json.loads(spec)["parents"]
            ready = ended[task - 1] if parent else first_start
            could = max(ready, device_free.get(device, first_start))
            latencies.append(max(started - could, 0.0) * 1000)
            device_free[device] = end
        store.close()
    return {"tasks": len(rows), "pool": f"fake:{devices}", "scheduler": scheduler,
            "history_jobs": history,
            "median_ready_to_start_ms": round(float(np.median(latencies)), 2),
            "p99_ready_to_start_ms": round(float(np.percentile(latencies, 99)), 2),
            "tasks_per_s": round(len(rows) / wall, 1)}


def bench_headroom(workload: str = "wfcommons:workloads/wfcommons",
                   pool_spec: str = "preset:workstation-4", seeds: int = 5,
                   seed_offset: int = 1000, load: float = 0.85, perturb: str = "all",
                   base: str = "share", others: tuple[str, ...] = ("heft", "cp", "tetris", "sjf"),
                   futures: int = 0, margin: float = 0.0,
                   progress: Callable[[str, float, float], None] | None = None) -> dict[str, Any]:
    """How much one better decision at a time could gain over ``base``: per
    online episode, ``base``'s average JCT and that of the one-step lookahead
    over it (:func:`rlsched.lookahead.lookahead_episode`). With ``futures=0``
    the lookahead knows the future, and a learned policy that cannot see it
    should not expect more; with ``futures=K`` it plans on K drawn futures
    instead. ``margin``: keep ``base``'s choice unless another beats it by
    more than this fraction (:func:`rlsched.lookahead.best_candidate`). Slow:
    minutes per episode (a play-out per distinct candidate per decision,
    times K).

    :param progress: called as ``progress(label, simulated time, horizon)``
    """
    from rlsched.evaluate import episodes
    from rlsched.lookahead import lookahead_episode
    from rlsched.metrics import measure
    from rlsched.perturbations import Perturbations
    from rlsched.sim import Simulator
    from rlsched.sources.specs import resolve_pool

    pool = resolve_pool(pool_spec)
    weather = Perturbations.parse(perturb)
    rows = []
    for _, instance, seed in episodes([workload], pool, "poisson", load,
                                      list(range(seed_offset, seed_offset + seeds))):
        reference = measure(run_episode(instance, pool, make_scheduler(base), seed, weather))
        horizon = reference.makespan
        t0 = time.perf_counter()
        result, departed, asked = lookahead_episode(
            Simulator(instance, pool, seed, weather), make_scheduler(base),
            [make_scheduler(o) for o in others], futures=futures, margin=margin,
            progress=(lambda now, s=seed, h=horizon: progress(f"seed {s}", now, h))
            if progress else None)
        looked = measure(result)
        rows.append({"seed": seed, "base_avg_jct": round(reference.avg_jct, 1),
                     "lookahead_avg_jct": round(looked.avg_jct, 1),
                     "ratio": round(looked.avg_jct / reference.avg_jct, 4),
                     "departed": departed, "decisions": asked, "placements": result.decisions,
                     "wall_s": round(time.perf_counter() - t0, 1)})
    mean = sum(r["lookahead_avg_jct"] for r in rows) / sum(r["base_avg_jct"] for r in rows)
    return {"workload": workload, "pool": pool_spec, "load": load, "perturb": perturb,
            "base": base, "candidates": [base, *others, "wait"],
            "futures": futures or "hindsight", "margin": margin, "episodes": rows,
            "ratio_of_means": round(mean, 4)}
