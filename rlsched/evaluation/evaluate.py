"""Evaluate schedulers on workloads and a pool: every result a ratio.

One *episode* is one scheduler on one instance under one seed. The seed
draws the arrival times, the perturbations and any synthetic workload, and
every scheduler of a run sees the same draw, so ratios between schedulers
measured in one run are fair.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rlsched.arrivals import ARRIVALS, batch, online
from rlsched.errors import InputError
from rlsched.estimates import DEFAULT_ESTIMATES, EXACT, EstimateModel
from rlsched.metrics import Metrics, measure, optimum_for
from rlsched.perturbations import Perturbations
from rlsched.pool import Pool
from rlsched.schedulers import Scheduler, checked_if_slow, is_oracle, make_scheduler
from rlsched.sim import SimResult, Simulator
from rlsched.sources.specs import resolve_pool, resolve_workload
from rlsched.workload import Instance, validate_fits, validate_placement


@dataclass(frozen=True)
class EpisodeResult:
    """One episode of a run: which scheduler on which instance and seed, and
    what :func:`rlsched.metrics.measure` measured (``--json``'s ``results``
    holds its :meth:`to_json`, flat)."""

    scheduler: str
    workload: str
    instance: str
    seed: int
    metrics: Metrics
    optimum: float | None
    decisions: int
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler, "workload": self.workload,
                "instance": self.instance, "seed": self.seed, **asdict(self.metrics),
                "optimum": self.optimum, "decisions": self.decisions, "wall_s": self.wall_s}


@dataclass
class Evaluation:
    """Everything a run measured, and enough to plot it."""

    config: dict[str, Any]
    results: list[EpisodeResult] = field(default_factory=list)
    #: first episode of each scheduler, for Gantt charts
    samples: dict[str, SimResult] = field(default_factory=dict)
    #: search schedulers' ``(evaluations, best objective)`` per plan of their
    #: first episode, for convergence charts
    search_history: dict[str, list[list[tuple[int, float]]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per scheduler: means, ratios to the lower bounds, to the optimum,
        and to the best scheduler of each episode of this run."""
        best_mk: dict[tuple, float] = {}
        best_jct: dict[tuple, float] = {}
        bounds = set(self.config.get("bounds", ()))
        for r in self.results:
            if r.scheduler in bounds:  # a bound is not a scheduler to beat
                continue
            k = (r.workload, r.instance, r.seed)
            best_mk[k] = min(best_mk.get(k, math.inf), r.metrics.makespan)
            best_jct[k] = min(best_jct.get(k, math.inf), r.metrics.avg_jct)
        rows: dict[str, list[EpisodeResult]] = defaultdict(list)
        for r in self.results:
            rows[r.scheduler].append(r)
        out = {}
        def vs(best: dict[tuple, float], r: EpisodeResult, value: float) -> float:
            return _ratio(value, best.get((r.workload, r.instance, r.seed), value))

        for name, rs in rows.items():
            opt = [r.metrics.makespan / r.optimum for r in rs if r.optimum]
            out[name] = {
                "bound": name in bounds,
                "episodes": len(rs),
                "makespan": _mean(r.metrics.makespan for r in rs),
                "avg_jct": _mean(r.metrics.avg_jct for r in rs),
                "weighted_jct": _mean(r.metrics.weighted_jct for r in rs),
                "utilization": _mean(r.metrics.utilization for r in rs),
                "deadline_misses": sum(r.metrics.deadline_misses for r in rs),
                "makespan_vs_lower_bound": _mean(_ratio(r.metrics.makespan, r.metrics.lower_bound)
                                                 for r in rs),
                "jct_vs_lower_bound": _mean(_ratio(r.metrics.avg_jct, r.metrics.jct_lower_bound) for r in rs),
                "makespan_vs_optimum": _mean(opt) if opt else None,
                "makespan_vs_best": _mean(
                    vs(best_mk, r, r.metrics.makespan) for r in rs),
                "jct_vs_best": _mean(
                    vs(best_jct, r, r.metrics.avg_jct) for r in rs),
            }
        return out

    def versus_best_non_learned(self, resamples: int = 2000) -> dict[str, dict[str, Any]]:
        """Each learned scheduler (``rl:...``) against the non-learned one with
        the best mean, per metric (``avg_jct``, ``makespan``): the ratio of
        their means over this run's episodes, and a 95% interval of it from a
        paired bootstrap (episodes resampled together, seeded, so the same
        run prints the same interval). Five online episodes can differ by a
        few percent by chance alone; the interval says how much."""
        learned = sorted({r.scheduler for r in self.results if r.scheduler.startswith("rl:")})
        others = {r.scheduler for r in self.results} - set(learned) - set(
            self.config.get("bounds", ()))
        if not learned or not others:
            return {}
        keys = sorted({(r.workload, r.instance, r.seed) for r in self.results})
        index = {k: i for i, k in enumerate(keys)}
        rng = np.random.default_rng(0)
        draws = rng.integers(len(keys), size=(resamples, len(keys)))
        out: dict[str, dict[str, Any]] = {}
        for metric in ("avg_jct", "makespan"):
            table: dict[str, np.ndarray] = {}
            for name in {r.scheduler for r in self.results}:
                v = np.full(len(keys), np.nan)
                for r in self.results:
                    if r.scheduler == name:
                        v[index[(r.workload, r.instance, r.seed)]] = getattr(r.metrics, metric)
                table[name] = v
            best = min(sorted(others), key=lambda n: float(np.nanmean(table[n])))
            for name in learned:
                a, b = table[name], table[best]
                ratios = np.nanmean(a[draws], axis=1) / np.nanmean(b[draws], axis=1)
                lo, hi = np.nanpercentile(ratios, [2.5, 97.5])
                out.setdefault(name, {})[metric] = {
                    "against": best, "ratio": float(np.nanmean(a) / np.nanmean(b)),
                    "ci95": [float(lo), float(hi)], "episodes": len(keys)}
        return out

    def hindsight_choice(self) -> dict[str, Any]:
        """The non-learned schedulers (bounds aside) chosen episode by
        episode with hindsight, per metric (``avg_jct``, ``makespan``): the
        mean of each episode's best, its ratio to the best single
        scheduler's mean, and how often each was the one chosen (a tie goes
        to the name first in alphabetical order). No scheduler can choose so without knowing
        the outcome; it is how far a policy that only picks among these
        heuristics, one per episode, could go. Episodes that some scheduler
        did not run are left out; empty with fewer than two schedulers."""
        bounds = set(self.config.get("bounds", ()))
        names = sorted({r.scheduler for r in self.results
                        if not r.scheduler.startswith("rl:") and r.scheduler not in bounds})
        if len(names) < 2:
            return {}
        by_episode: dict[tuple, dict[str, EpisodeResult]] = defaultdict(dict)
        for r in self.results:
            if r.scheduler in names:
                by_episode[(r.workload, r.instance, r.seed)][r.scheduler] = r
        complete = [e for e in by_episode.values() if len(e) == len(names)]
        if not complete:
            return {}
        out: dict[str, Any] = {}
        for metric in ("avg_jct", "makespan"):
            picks = [min(names, key=lambda n: getattr(e[n].metrics, metric)) for e in complete]
            chosen = _mean(getattr(e[n].metrics, metric) for e, n in zip(complete, picks))
            single = {n: _mean(getattr(e[n].metrics, metric) for e in complete) for n in names}
            best = min(names, key=single.__getitem__)
            out[metric] = {"mean": chosen, "against": best,
                           "ratio": _ratio(chosen, single[best]),
                           "picks": {n: picks.count(n) for n in names if n in picks},
                           "episodes": len(complete)}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "notes": self.notes,
                "results": [r.to_json() for r in self.results],
                "summary": self.summary(), "versus_best_non_learned": self.versus_best_non_learned(),
                "hindsight_choice": self.hindsight_choice()}


def _mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.fmean(xs) if xs else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 1.0


def run_episode(instance: Instance, pool: Pool, scheduler: Scheduler, seed: int,
                perturbations: Perturbations | None = None,
                estimates: EstimateModel | None = None) -> SimResult:
    """Run one scheduler over one instance; the finished simulation's result.
    An oracle (:func:`is_oracle`) runs with exact estimates, whatever
    ``estimates`` says."""
    scheduler.reset(seed)
    sim = Simulator(instance, pool, seed, perturbations,
                    EXACT if is_oracle(scheduler) else estimates, idle_only=scheduler.idle_only,
                    learns=scheduler.reads_beliefs)
    view = sim.reset()
    while view is not None:
        view = sim.step(scheduler.decide(view))
    return sim.result()


def episodes(workload_specs: list[str], pool: Pool, arrivals: str, load: float,
             seeds: list[int]) -> list[tuple[str, Instance, int]]:
    """``(workload spec, instance, seed)`` for every episode of a run.

    Batch: every instance of every seed on its own. Poisson: all jobs of a
    workload SPEC in one online stream per seed. Trace: every instance on
    its own, at its own arrival times.
    """
    out: list[tuple[str, Instance, int]] = []
    for spec in workload_specs:
        source = resolve_workload(spec)
        for seed in seeds:
            instances = source.instances(seed)
            for inst in instances:
                validate_fits(inst, pool.max_memory, pool.name)
                validate_placement(inst, pool)
            if arrivals == "batch":
                out.extend((spec, batch(inst), seed) for inst in instances)
            elif arrivals == "trace":
                out.extend((spec, inst, seed) for inst in instances)
            else:
                rng = np.random.default_rng([seed, 17])
                out.append((spec, online(instances, pool, load, rng, source=spec), seed))
    return out


def evaluate(workload_specs: list[str], pool_spec: str, scheduler_specs: list[str], *,
             arrivals: str = "batch", load: float = 0.85, seeds: int = 1,
             seed_offset: int = 0, perturb: str = "none", estimates: str = "default",
             search_budget: float = 2.0,
             search_evaluations: int | None = None,
             progress: Callable[[int, int, str], None] | None = None,
             workers: int = 1, samples: bool = True) -> Evaluation:
    """Run every scheduler on every episode; see :class:`Evaluation`.

    :param estimates: what schedulers are told of runtimes (see
        :mod:`rlsched.estimates`); ``oracle:`` schedulers are told the truth
    :param search_budget: seconds per plan of the search schedulers (ga, sa)
    :param search_evaluations: schedules per plan instead (deterministic)
    :param progress: called as ``progress(done, total, label)`` after each episode
    :param workers: processes to run episodes in (0: one per CPU); every
        episode is its own, so the results are the same whatever the number
    :param samples: keep each scheduler's first episode whole, for plots
        (``Evaluation.samples``); a worker then sends it back, trace and all
    """
    _check(arrivals, load, seeds, workers, search_budget, search_evaluations)
    workers = workers or os.cpu_count() or 1
    pool = resolve_pool(pool_spec)
    perturbations = Perturbations.parse(perturb)
    knowledge = EstimateModel.parse(estimates)
    seed_list = list(range(seed_offset, seed_offset + seeds))
    plan = episodes(workload_specs, pool, arrivals, load, seed_list)
    in_workers = workers > 1 and len(plan) * len(scheduler_specs) > 1
    # None: a policy the workers load (checked here as far as it can be without loading)
    schedulers = [_here(s, search_budget, search_evaluations, in_workers)
                  for s in scheduler_specs]
    ev = Evaluation(config={
        "workloads": workload_specs, "pool": pool_spec, "schedulers": scheduler_specs,
        "arrivals": arrivals, "load": load if arrivals == "poisson" else None,
        "seeds": seed_list, "perturb": perturb, "estimates": knowledge.spec,
        "estimates_default": DEFAULT_ESTIMATES if estimates == "default" else None,
        "bounds": [s for s, sched in zip(scheduler_specs, schedulers)
                   if sched is not None and is_oracle(sched)],
        "devices": [d.model.name for d in pool.devices]})
    for spec in workload_specs:
        ev.notes.extend(resolve_workload(spec).notes)
    if any(s.startswith("wfcommons:") for s in workload_specs):
        ev.notes.append("WfCommons runtimes are measured; their GPU attributes (kind, GPU "
                        "memory) are synthetic.")
    # (plan index, scheduler index) in the order results are reported; a
    # scheduler's first episode keeps its whole result, for the plots
    cells = [(e, k) for e in range(len(plan)) for k in range(len(schedulers))]
    total = len(cells)
    outcomes: dict[tuple[int, int], _Outcome] = {}

    def label(cell: tuple[int, int]) -> str:
        _, inst, seed = plan[cell[0]]
        return f"{scheduler_specs[cell[1]]} on {inst.name} (seed {seed})"

    if not in_workers:
        ran: Iterable[tuple[tuple[int, int], _Outcome]] = (
            (cell, _episode(plan[cell[0]][1], pool, _loaded(schedulers[cell[1]]),
                            plan[cell[0]][2], perturbations, knowledge,
                            keep=samples and cell[0] == 0))
            for cell in cells)
    else:
        # the longest first (a rough size: the instance's tasks, then whether
        # the scheduler is costly: a policy is), so a big episode started
        # last does not leave the other workers idle at the end
        costly = [sched is None or sched.costly for sched in schedulers]
        ran = _in_workers(workers, sorted(cells, key=lambda c: (
            -plan[c[0]][1].n_tasks, not costly[c[1]])), plan, pool,
            scheduler_specs, search_budget, search_evaluations, perturbations, knowledge,
            samples)
    try:
        for cell, outcome in ran:
            outcomes[cell] = outcome
            if progress:
                progress(len(outcomes), total, label(cell))
    finally:
        close = getattr(ran, "close", None)
        if close is not None:  # workers: stopped, where an error leaves the loop early
            close()
    for cell in cells:
        spec, inst, seed = plan[cell[0]]
        name = scheduler_specs[cell[1]]
        m, decisions, wall, sample, history = outcomes[cell]
        ev.results.append(EpisodeResult(
            scheduler=name, workload=spec, instance=inst.name, seed=seed, metrics=m,
            optimum=optimum_for(dict(inst.optimum), pool), decisions=decisions, wall_s=wall))
        if sample is not None and name not in ev.samples:
            ev.samples[name] = sample
            if history:
                ev.search_history[name] = history
    return ev


def _here(spec: str, search_budget: float, search_evaluations: int | None,
          in_workers: bool) -> Scheduler | None:
    """The scheduler of ``spec`` built here, or None for one slow to load (a
    learned policy: torch and a checkpoint, seconds) that only the workers
    run: its cheap check (:func:`checked_if_slow`) is made here, and
    what only loading it can find (a checkpoint that does not match its
    card) stops the run with the same one line from the worker."""
    if in_workers and checked_if_slow(spec):
        return None
    return make_scheduler(spec, search_budget, search_evaluations)


def _loaded(sched: Scheduler | None) -> Scheduler:
    assert sched is not None, "a scheduler left to the workers, run here"
    return sched


def _check(arrivals: str, load: float, seeds: int, workers: int, search_budget: float,
           search_evaluations: int | None) -> None:
    """:class:`InputError` naming the first argument of :func:`evaluate` out of range."""
    if arrivals not in ARRIVALS:
        raise InputError("--arrivals", f"'{arrivals}' is not one of {', '.join(ARRIVALS)}")
    if not 0 < load <= 10:
        raise InputError("--load", f"{load} is not a load in (0, 10]")
    if seeds < 1:
        raise InputError("--seeds", f"needs at least one seed, not {seeds}")
    if workers < 0:
        raise InputError("--workers", f"needs 0 (one per CPU) or more, not {workers}")
    if search_budget <= 0 or (search_evaluations is not None and search_evaluations < 1):
        raise InputError("--search-budget", "the search budget must be positive")


#: what one episode gives back: its metrics, decisions, wall seconds, and
#: (for a scheduler's first episode) the whole result and a search's history
_Outcome = tuple[Metrics, int, float, SimResult | None, list[list[tuple[int, float]]] | None]


def _episode(inst: Instance, pool: Pool, sched: Scheduler, seed: int,
             perturbations: Perturbations, knowledge: EstimateModel, keep: bool) -> _Outcome:
    """One episode, timed and measured; ``keep``: return its result whole."""
    t0 = time.perf_counter()
    result = run_episode(inst, pool, sched, seed, perturbations, knowledge)
    wall = time.perf_counter() - t0
    history = getattr(sched, "history", None) if keep else None
    return (measure(result), result.decisions, wall, result if keep else None,
            [list(h) for h in history] if history else None)


#: a worker's schedulers, built once per process from their specs
_WORKER_SCHEDULERS: dict[tuple[str, float, int | None], Scheduler] = {}


def _worker_episode(inst: Instance, pool: Pool, spec: str, search_budget: float,
                    search_evaluations: int | None, seed: int, perturbations: Perturbations,
                    knowledge: EstimateModel, keep: bool) -> _Outcome:
    key = (spec, search_budget, search_evaluations)
    sched = _WORKER_SCHEDULERS.get(key)
    if sched is None:
        sched = _WORKER_SCHEDULERS[key] = make_scheduler(spec, search_budget, search_evaluations)
    return _episode(inst, pool, sched, seed, perturbations, knowledge, keep)


def _registering_modules() -> tuple[str, ...]:
    """The modules outside the core whose import registered a scheduler
    here (``agents``, for ``rl:``): a spawned worker imports them too, or it
    would not know those names."""
    from rlsched.schedulers import SCHEDULER_PREFIXES, SCHEDULERS

    modules = {getattr(f, "__module__", None)
               for f in (*SCHEDULERS.values(), *SCHEDULER_PREFIXES.values())}
    return tuple(sorted(m for m in modules if m and m != "__main__"
                        and not m.startswith("rlsched.")))


def _import_all(modules: tuple[str, ...]) -> None:
    import importlib

    for module in modules:
        importlib.import_module(module)


def _in_workers(workers: int, cells: list[tuple[int, int]],
                plan: list[tuple[str, Instance, int]], pool: Pool, specs: list[str],
                search_budget: float, search_evaluations: int | None,
                perturbations: Perturbations, knowledge: EstimateModel, samples: bool
                ) -> Iterator[tuple[tuple[int, int], _Outcome]]:
    """Each cell's outcome, run in ``workers`` processes in the order of
    ``cells``, as they finish. Spawned, not forked: a parent that has loaded
    a policy has torch's threads, which a fork does not carry over."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool_ex = ProcessPoolExecutor(max_workers=min(workers, len(cells)),
                                  mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_import_all, initargs=(_registering_modules(),))
    try:
        futures = {pool_ex.submit(_worker_episode, plan[e][1], pool, specs[k], search_budget,
                                  search_evaluations, plan[e][2], perturbations, knowledge,
                                  samples and e == 0): (e, k) for e, k in cells}
        for future in as_completed(futures):
            yield futures[future], future.result()
    except BaseException:  # an episode failed, Ctrl-C, or the caller stopped reading
        pool_ex.shutdown(wait=False, cancel_futures=True)  # the rest is not waited for
        raise
    pool_ex.shutdown()
