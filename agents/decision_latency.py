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
    """Median and p99 milliseconds of one ``decide`` (encode + forward + mask)
    on a view of a 100-task layered workload on the 8-GPU ``lab-8`` pool."""
    torch.set_num_threads(1)
    sched = RLScheduler(checkpoint)
    instance = batch(generate("layered", {"tasks": "100", "width": "0.6"}, 0, "bench"))
    view = Simulator(instance, preset_pool("lab-8")).reset()
    times = []
    for _ in range(decisions):
        sched.reset(0)  # each call re-derives the episode statics, the worst case
        t0 = time.perf_counter()
        sched.decide(view)
        times.append((time.perf_counter() - t0) * 1000)
    return {"checkpoint": str(checkpoint), "tasks": instance.n_tasks, "devices": 8,
            "ready": len(view.ready), "median_ms": round(float(np.median(times)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3)}
