#!/usr/bin/env python3
"""What a checkpoint of encoder version 9 or 10 loses live to the time scale
it is shown there, measured in the simulator.

Such a checkpoint trained on the scale of the whole episode's table at the
first view (jobs not yet arrived included); the live daemon's table holds
the jobs in the system, rebuilt whenever that set changes, so live it is
shown their mean prediction instead. This runs the checkpoint both ways on
the same episodes, beside the given heuristics, and prints each episode's
average JCT and the means over the best heuristic
(``docs/policy-research.md``, "One time scale for both worlds").

    python scripts/live_scale_gap.py --pool preset:workstation-4 --seeds 700-719
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import agents  # noqa: F401  (registers rl:)
from agents.scheduler import RLScheduler
from envs.encoder import EpisodeStatics, _mean_or_one
from rlsched.estimates import EstimateModel
from rlsched.evaluation.evaluate import episodes, run_episode
from rlsched.metrics import measure
from rlsched.perturbations import Perturbations
from rlsched.schedulers import make_scheduler
from rlsched.sources.specs import resolve_pool
from rlsched.view import ClusterView, Placement, TaskState


class DaemonScale(RLScheduler):
    """The checkpoint shown the scale the daemon shows it: the mean prediction
    over the GPU tasks of the jobs in the system, taken again whenever that
    set changes (as the daemon rebuilds its table)."""

    def reset(self, seed: int = 0) -> None:
        super().reset(seed)
        self._in_system: tuple[int, ...] | None = None

    def _decide(self, view: ClusterView) -> list[Placement]:
        table = view.table
        job_of = table.arrays["job_of"]
        state = np.frombuffer(view.task_state, np.uint8)
        open_jobs = np.bincount(job_of, weights=state != TaskState.DONE,
                                minlength=table.n_jobs) > 0
        in_system = tuple(np.flatnonzero(open_jobs[:view.n_arrived]).tolist())
        if self._statics is None or self._statics.table is not table:
            self._statics = EpisodeStatics(table, view.pool, view.predicted, self.encoder_version)
            self._in_system = None
        if in_system != self._in_system:
            self._in_system = in_system
            tasks = (job_of < view.n_arrived) & open_jobs[job_of] & table.arrays["gpu"]
            work = np.asarray(view.predicted)[tasks]
            self._statics.scale = _mean_or_one(work)
        return super()._decide(view)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="wfcommons:workloads/wfcommons")
    parser.add_argument("--pool", default="preset:workstation-4")
    parser.add_argument("--seeds", default="700-719", help="FIRST-LAST")
    parser.add_argument("--checkpoint", default="checkpoints/v9.zip")
    parser.add_argument("--heuristics", default="share,sjf")
    args = parser.parse_args()
    first, _, last = args.seeds.partition("-")
    seeds = list(range(int(first), int(last or first) + 1))
    pool = resolve_pool(args.pool)
    heuristics = args.heuristics.split(",")
    rows = []
    for _, instance, seed in episodes([args.workload], pool, "poisson", 0.85, seeds):
        schedulers = [(h, make_scheduler(h)) for h in heuristics] + [
            ("simulator's scale", make_scheduler(f"rl:{args.checkpoint}")),
            ("daemon's scale", DaemonScale(args.checkpoint))]
        row = {name: measure(run_episode(instance, pool, s, seed, Perturbations.parse("all"),
                                         EstimateModel.parse("default"))).avg_jct
               for name, s in schedulers}
        rows.append(row)
        print(seed, {k: round(v, 1) for k, v in row.items()}, flush=True)
    means = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    best = min(heuristics, key=means.__getitem__)
    for name, mean in means.items():
        print(f"{name}: {mean:,.1f} s, {mean / means[best]:.3f} x {best}")


if __name__ == "__main__":
    main()
