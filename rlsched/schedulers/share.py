"""Shortest remaining job first, with short tasks sharing busy GPUs.

Non-preemptive queues make a short job wait behind long tasks that hold
every GPU. Sharing a device costs a little throughput (interference) but lets
the short task start now, a processor-sharing effect that helps average JCT
when job sizes are heavy-tailed, as in real workflows. So: first place ready
tasks, in order of their job's remaining work, on idle GPUs (the fastest for
each); then let a remaining task share a busy GPU (memory allowing, at most
``max_share`` tasks) when it would take under ``ratio`` of the time that
GPU's current work still needs.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlsched.schedulers.base import Scheduler, expected_runtime
from rlsched.view import ClusterView, Placement


class ShareScheduler(Scheduler):
    """SRPT by job onto idle GPUs, then short tasks onto busy ones.

    :param ratio: a task may share a GPU if its runtime there is below this
        fraction of the GPU's remaining busy time
    :param max_share: most tasks on one GPU
    """

    name = "share"

    def __init__(self, ratio: float = 0.1, max_share: int = 3) -> None:
        self.ratio, self.max_share = ratio, max_share

    def order(self, view: ClusterView) -> Sequence[int]:
        remaining, job_of, work = view.job_remaining, view.table.job_of, view.table.work
        return sorted(view.ready, key=lambda t: (remaining[job_of[t]], -work[t], t))

    def _decide(self, view: ClusterView) -> list[Placement]:
        memory = view.table.memory
        free = [d.memory_free if d.healthy else -1.0 for d in view.devices]
        count = [d.n_tasks for d in view.devices]
        idle = [d.index for d in view.devices if d.healthy and d.n_tasks == 0]
        busy_for = [0.0] * len(view.devices)
        for r in view.running:
            if r.device >= 0:
                left = r.start + expected_runtime(view, r.task, r.device) - view.time
                busy_for[r.device] = max(busy_for[r.device], left)
        out: list[Placement] = []
        waiting = []
        for t in self.order(view):
            fitting = [d for d in idle if memory[t] <= free[d] + 1e-9]
            if not fitting:
                waiting.append(t)
                continue
            d = min(fitting, key=lambda d: expected_runtime(view, t, d))
            out.append(Placement(t, d))
            idle.remove(d)
            free[d] -= memory[t]
            count[d] += 1
        for t in waiting:
            best = None
            for d in range(len(free)):
                if count[d] == 0 or count[d] >= self.max_share or memory[t] > free[d] + 1e-9:
                    continue
                runtime = expected_runtime(view, t, d)
                if runtime < self.ratio * busy_for[d] and (best is None or runtime < best[0]):
                    best = (runtime, d)
            if best is not None:
                d = best[1]
                out.append(Placement(t, d))
                free[d] -= memory[t]
                count[d] += 1
        return out
