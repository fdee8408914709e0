"""``rlsched bench policy``: decision latency of a policy on the CPU."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.scheduler import RLScheduler
from rlsched.arrivals import batch
from rlsched.pool import preset_pool
from rlsched.sim import Simulator
from rlsched.sources.synthetic import generate


def bench_policy(checkpoint: str | Path, decisions: int = 300) -> dict[str, Any]:
    """Milliseconds of one ``decide`` (advisors + encode + forward + mask) of
    the policy scheduling a 100-task layered workload on the 8-GPU ``lab-8``
    pool, under the default estimates: ``median_ms`` and ``p99_ms`` over
    the first ``decisions`` calls of episodes it drives (seeds 0, 1, ...),
    as in a run, where what a job's DAG encodes to, and the advisors' plans,
    carry over from one decision to the next. ``cold_median_ms`` is the
    first decision of an episode, where nothing carries over, measured on
    its first view again and again after a reset."""
    from rlsched.estimates import EstimateModel

    torch.set_num_threads(1)
    sched = RLScheduler(checkpoint)
    instance = batch(generate("layered", {"tasks": "100", "width": "0.6"}, 0, "bench"))
    pool, knowledge = preset_pool("lab-8"), EstimateModel.parse("default")
    times: list[float] = []
    ready: list[int] = []
    seed = 0
    while len(times) < decisions:
        sched.reset(seed)
        sim = Simulator(instance, pool, seed, estimates=knowledge)
        view = sim.reset()
        while view is not None and len(times) < decisions:
            t0 = time.perf_counter()
            placements = sched.decide(view)
            times.append((time.perf_counter() - t0) * 1000)
            ready.append(len(view.ready))
            view = sim.step(placements)
        seed += 1
    first = Simulator(instance, pool, 0, estimates=knowledge).reset()
    cold = []
    for _ in range(max(decisions // 10, 5)):
        sched.reset(0)  # each call re-derives the episode statics and plans afresh
        t0 = time.perf_counter()
        sched.decide(first)
        cold.append((time.perf_counter() - t0) * 1000)
    return {"checkpoint": str(checkpoint), "tasks": instance.n_tasks, "devices": 8,
            "ready": round(float(np.mean(ready)), 1), "decisions": len(times),
            "median_ms": round(float(np.median(times)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3),
            "cold_median_ms": round(float(np.median(cold)), 3)}
