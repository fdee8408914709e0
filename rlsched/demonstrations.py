"""Demonstrations: what a scheduler did, as (view, placement) pairs.

Imitation learning needs, for each decision point a policy would face, the
teacher's choice. The teacher is run one placement at a time, exactly as the
Gymnasium environment applies actions, so every view here is one the learner
also sees; ``None`` is the teacher's choice to wait.
"""

from __future__ import annotations

from rlsched.perturbations import Perturbations
from rlsched.pool import Pool
from rlsched.schedulers import Scheduler
from rlsched.sim import SimResult, Simulator
from rlsched.view import ClusterView, Placement
from rlsched.workload import Instance


def demonstrations(instance: Instance, pool: Pool, teacher: Scheduler, seed: int = 0,
                   perturbations: Perturbations | None = None,
                   ) -> tuple[list[tuple[ClusterView, Placement | None]], SimResult]:
    """Run ``teacher`` on ``instance``; its decisions and the finished episode."""
    teacher.reset(seed)
    sim = Simulator(instance, pool, seed, perturbations)
    view = sim.reset()
    pairs: list[tuple[ClusterView, Placement | None]] = []
    while view is not None:
        placements = teacher.decide(view)
        choice = placements[0] if placements else None
        pairs.append((view.snapshot(), choice))  # the simulator moves on
        view = sim.step([choice] if choice is not None else [])
    return pairs, sim.result()
