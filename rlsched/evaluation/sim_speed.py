"""``rlsched bench sim`` and ``bench search``: how fast the simulator decides
and the search decodes schedules, as JSON. Speed is measured here, never in
unit tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rlsched.arrivals import batch
from rlsched.estimates import EstimateModel
from rlsched.evaluation.evaluate import run_episode
from rlsched.native import compiled
from rlsched.pool import identical_pool, preset_pool
from rlsched.schedulers import make_scheduler
from rlsched.sources.synthetic import generate


def bench_sim(tasks: int = 1000, devices: int = 8, seed: int = 0, repeats: int = 3,
              estimates: str = "default") -> dict[str, Any]:
    """Scheduling decisions per second of the simulator driven by fifo and by
    heft: a layered synthetic workload of ``tasks`` tasks (10 jobs, batch) on
    ``devices`` devices (the mixed ``lab-8`` preset for 8, identical otherwise),
    under the estimate model ``estimates`` (the runtime model learning as
    tasks finish, unless ``exact``). The best of ``repeats`` runs counts,
    since the machine may be shared."""
    knowledge = EstimateModel.parse(estimates)
    pool = preset_pool("lab-8") if devices == 8 else identical_pool(devices)
    jobs = 10
    instance = batch(generate("layered", {"jobs": str(jobs), "tasks": str(tasks // jobs)},
                              seed, "bench"))
    out: dict[str, Any] = {
        "workload": f"synthetic:layered?jobs={jobs}&tasks={tasks // jobs}",
        "tasks": instance.n_tasks, "devices": len(pool),
        "pool": pool.name, "estimates": knowledge.spec,
        "compiled": compiled(),  # the simulator built by mypyc (rlsched/native.py), or its source
    }
    for name in ("fifo", "heft"):
        best = best_cpu = 0.0
        for _ in range(repeats):
            sched = make_scheduler(name)
            t0, c0 = time.perf_counter(), time.process_time()
            result = run_episode(instance, pool, sched, seed, estimates=knowledge)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            best = max(best, result.decisions / wall)
            best_cpu = max(best_cpu, result.decisions / max(cpu, 1e-9))
        out[f"{name}_decisions_per_s"] = round(best, 1)
        # on a shared machine the CPU time this process got is steadier than the wall clock
        out[f"{name}_decisions_per_cpu_s"] = round(best_cpu, 1)
    return out


def bench_search(seconds: float = 2.0, seed: int = 0) -> dict[str, Any]:
    """Schedules evaluated per second by the genetic algorithm's population
    decoder: the 50-task STG graph rand0000 on 4 identical devices."""
    import numpy as np

    from rlsched.schedulers.search_engine import Budget, SearchProblem, genetic
    from rlsched.sim import Simulator
    from rlsched.sources.stg import load_stg

    path = Path(__file__).resolve().parents[2] / "workloads" / "stg" / "50" / "rand0000.stg"
    (instance,) = load_stg(path)
    view = Simulator(instance, identical_pool(4)).reset()
    assert view is not None  # a batch instance: its first decision is at time 0
    problem = SearchProblem.from_view(view)
    keys, devices = problem.seeds(view)
    t0 = time.perf_counter()
    result = genetic(problem, keys, devices, np.random.default_rng(seed), Budget(seconds))
    wall = time.perf_counter() - t0
    return {"instance": "stg rand0000 (50 tasks)", "pool": "identical:4",
            "evaluations": result.evaluations, "seconds": round(wall, 3),
            "evaluations_per_s": round(result.evaluations / wall, 1)}
