"""``rlsched bench env``: environment speed, printed as JSON by the CLI."""

from __future__ import annotations

import time
from typing import Any

from envs.dag_env import DagSchedulingEnv
from rlsched.native import compiled


def bench_env(episodes: int = 5, seed: int = 0, repeats: int = 3) -> dict[str, Any]:
    """Environment steps per second with random masked actions: a 200-task
    layered workload (4 jobs of 50) on the four-GPU workstation, batch.

    """
    spec = "synthetic:layered?tasks=50&jobs=4"
    env = DagSchedulingEnv(spec, "preset:workstation-4")
    env.action_space.seed(seed)
    best = 0.0
    steps_total = 0
    for _ in range(repeats):
        steps = 0
        t0 = time.perf_counter()
        for ep in range(episodes):
            env.reset(seed=seed + ep)
            done = False
            while not done:
                _, _, done, _, _ = env.step(env.action_space.sample())
                steps += 1
        best = max(best, steps / (time.perf_counter() - t0))
        steps_total = steps
    return {"workload": spec, "pool": "preset:workstation-4", "tasks": env.sim.table.n_tasks,
            "episodes": episodes, "steps": steps_total, "steps_per_s": round(best, 1),
            "compiled": compiled()}
