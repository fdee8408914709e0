"""``rlsched bench headroom``: what a one-step lookahead over a heuristic gains
(with foresight, or planning on drawn futures), per online episode, as JSON."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rlsched.evaluation.evaluate import run_episode
from rlsched.schedulers import make_scheduler


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
    from rlsched.evaluation.evaluate import episodes
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
            progress=_bound(progress, f"seed {seed}", horizon) if progress else None)
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


def _bound(progress: Callable[[str, float, float], None], label: str,
           horizon: float) -> Callable[[float], None]:
    """``progress`` with this episode's label and horizon bound to it."""
    def report(now: float) -> None:
        progress(label, now, horizon)
    return report
