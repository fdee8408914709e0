"""``ga`` and ``sa``: schedulers that search for a plan, then follow it.

On each plan (at the start, and on a rolling horizon: whenever a job arrives
or the world changes) they search over the unstarted tasks' priority keys and
devices within a budget, seeded with HEFT, and follow the best plan found
(see :mod:`rlsched.schedulers.search_engine` and :mod:`rlsched.schedulers.plan`).
Their genome gives each task one device, so on a workload with gangs (tasks
of several GPUs) they follow the HEFT plan they would be seeded with.
"""

from __future__ import annotations

from rlsched.schedulers.heft import heft_plan
from rlsched.schedulers.plan import Plan, PlanScheduler
from rlsched.view import ClusterView

DEFAULT_BUDGET_S = 2.0


class SearchScheduler(PlanScheduler):
    """Plans by a search algorithm of :data:`rlsched.schedulers.search_engine.ALGORITHMS`.

    :param budget_s: wall-clock seconds per plan
    :param evaluations: schedules evaluated per plan instead of a time budget
        (deterministic: same seed, same schedule)
    """

    algorithm = "ga"

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S, evaluations: int | None = None) -> None:
        from rlsched.schedulers import search_engine as engine  # numpy: only when a search runs

        self.budget = engine.Budget(budget_s, evaluations)
        #: ``(evaluations, best objective)`` of every plan of the episode
        self.history: list[list[tuple[int, float]]] = []
        self.reset(0)

    def reset(self, seed: int = 0) -> None:
        super().reset(seed)
        import numpy as np

        self.rng = np.random.default_rng([seed, 3])
        self.history = []

    def make_plan(self, view: ClusterView) -> Plan:
        if view.table.has_gangs:
            # the search's genome gives each task one device; with gangs it
            # keeps the plan it would be seeded with
            return heft_plan(view)
        from rlsched.schedulers import search_engine as engine

        problem = engine.SearchProblem.from_view(view)
        if problem.n_tasks == 0:
            return Plan()
        seed_keys, seed_dev = problem.seeds(view)
        result = engine.ALGORITHMS[self.algorithm](problem, seed_keys, seed_dev, self.rng, self.budget)
        self.history.append(result.history)
        return problem.to_plan(result.keys, result.device)


class GeneticScheduler(SearchScheduler):
    """Genetic algorithm over priority keys and devices, seeded with HEFT."""

    name = algorithm = "ga"


class AnnealingScheduler(SearchScheduler):
    """Simulated annealing over priority keys and devices, seeded with HEFT."""

    name = algorithm = "sa"
