"""``rlsched bench serve``: how soon the live daemon starts a task that can
start, and how many it starts per second, as JSON."""

from __future__ import annotations

import time
from typing import Any


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
    import tempfile

    import numpy as np

    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store
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
            store.mark_all_done()
        store.submit([Instance("bench", jobs, source="bench")])
        daemon = Daemon(store, f"fake:{devices}", scheduler)
        t0 = time.perf_counter()
        daemon.run(tick=0.002, exit_when_idle=True)
        wall = time.perf_counter() - t0
        daemon.close()
        rows = store.attempt_times(exclude_jobs_like="past%")
        ended = {r[0]: r[3] for r in rows}
        device_free: dict[int, float] = {}
        latencies = []
        first_start = min(r[2] for r in rows)
        for task, device, started, end, parent in rows:
            assert device is not None and end is not None  # every task ran, on a GPU
            ready = ended[task - 1] if parent else first_start
            could = max(ready or first_start, device_free.get(device, first_start))
            latencies.append(max(started - could, 0.0) * 1000)
            device_free[device] = end
        store.close()
    return {"tasks": len(rows), "pool": f"fake:{devices}", "scheduler": scheduler,
            "history_jobs": history,
            "median_ready_to_start_ms": round(float(np.median(latencies)), 2),
            "p99_ready_to_start_ms": round(float(np.percentile(latencies, 99)), 2),
            "tasks_per_s": round(len(rows) / wall, 1)}
