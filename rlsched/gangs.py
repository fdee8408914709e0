"""Gangs: tasks that take several GPUs at once (``gpus: N``, as DDP or FSDP
training under ``torchrun --nproc_per_node=N``).

What a gang's numbers mean:

* **Work.** A task's runtime (and its estimate) is its seconds on N
  reference GPUs of one host, as a user measures the command they run: the
  parallel efficiency of N GPUs on one host is already in it.
* **Speed.** A gang advances at the speed of its slowest member (data
  parallelism waits for the slowest worker at every step), times
  :func:`span_factor`: 1 on one host, the pool's ``across_hosts`` (default
  0.6) where the pool lets a gang span hosts (``hosts_linked``), since
  gradients then cross the network instead of NVLink or PCIe.
* **Memory.** ``gpu_memory`` is per device: each member needs it free.
* **Failure.** A gang is lost when any member fails, and starts again whole.

The scaling curve, :func:`parallel_efficiency`, is how a workload that knows
a training run's single-GPU work turns it into a gang's work
(:func:`gang_work`): each doubling of GPUs keeps 95% of per-GPU efficiency
(2 GPUs: 0.95, 4: 0.90, 8: 0.86), the range reported for data-parallel
ResNet and BERT training on one NVLink or PCIe host (Horovod, Sergeev and Del
Balso 2018; PyTorch DDP, Li et al. 2020).

Where a scheduler (or the environment's action, which names a task and a
first device) leaves the choice of members open, :func:`pick_gang` takes
them by one documented rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from rlsched.pool import Pool

#: per-GPU efficiency kept at each doubling of a gang on one host
EFFICIENCY_PER_DOUBLING = 0.95


def parallel_efficiency(n: int) -> float:
    """Per-GPU efficiency of a data-parallel run on ``n`` GPUs of one host."""
    return EFFICIENCY_PER_DOUBLING ** math.log2(n) if n > 1 else 1.0


def gang_work(single_gpu_work: float, n: int) -> float:
    """Seconds on ``n`` reference GPUs of a run of ``single_gpu_work`` seconds on one."""
    return single_gpu_work / (n * parallel_efficiency(n))


def span_factor(pool: Pool, devices: Sequence[int]) -> float:
    """A gang's speed on ``devices`` against its speed on one host."""
    if len(devices) < 2:
        return 1.0
    host = pool.devices[devices[0]].host
    return 1.0 if all(pool.devices[d].host == host for d in devices) else pool.across_hosts


def allowed_span(pool: Pool, devices: Sequence[int]) -> bool:
    """Whether ``devices`` may hold one gang: one host, or hosts that are linked."""
    if pool.hosts_linked or len(devices) < 2:
        return True
    host = pool.devices[devices[0]].host
    return all(pool.devices[d].host == host for d in devices)


def pick_gang(pool: Pool, n: int, candidates: Sequence[int], cost: Callable[[int], Any],
              first: int | None = None) -> tuple[int, ...] | None:
    """``n`` devices among ``candidates`` (each able to take the task now) for
    one gang, ``first`` among them if given; None if there are not enough.

    The rule: the gang stays on one host (``first``'s, if given); on each
    host it takes the devices that ``cost`` (the task's runtime there) ranks
    first, ties to the lower index; among hosts, the gang whose slowest
    member is fastest wins, ties to the host listed first. Only where no host
    has ``n`` and the pool links its hosts does it span them, the ``n``
    cheapest devices overall.
    """
    if first is not None and first not in candidates:
        return None
    ranked = sorted(candidates, key=lambda d: (cost(d), d))
    by_host: dict[str, list[int]] = {}
    for d in ranked:
        by_host.setdefault(pool.devices[d].host, []).append(d)
    if first is not None:
        host = pool.devices[first].host
        mates = [d for d in by_host[host] if d != first][:n - 1]
        if len(mates) == n - 1:
            return (first, *mates)
        if not pool.hosts_linked or len(ranked) < n:
            return None
        return (first, *[d for d in ranked if d != first][:n - 1])
    best: tuple[Any, tuple[int, ...]] | None = None
    for members in by_host.values():
        if len(members) >= n:
            gang = tuple(members[:n])
            slowest = max(cost(d) for d in gang)
            if best is None or slowest < best[0]:
                best = (slowest, gang)
    if best is not None:
        return best[1]
    if pool.hosts_linked and len(ranked) >= n:
        return tuple(ranked[:n])
    return None
