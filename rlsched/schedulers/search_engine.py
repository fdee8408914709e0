"""Search-based schedule optimisation: a genetic algorithm and simulated annealing.

A candidate schedule is a pair of genes per task: a *priority key* (random
keys: higher goes first) and a *device*, or :data:`AUTO` for the device where
the task would finish first (which removes the symmetry of interchangeable
devices from the search). A list scheduler decodes it: at each step the
eligible task (all parents placed) with the highest key starts on its device
as soon as both the device and its inputs are free. Every gene pair
decodes to a valid schedule, and every schedule is reachable (sort any
schedule's tasks by start time, keep their devices: decoding starts each task
no later), so the optimum is in the search space.

The decoder runs on a whole population at once, on numpy arrays of shape
(population, tasks): one step per task, no Python object per candidate.

Both searches are seeded with HEFT's plan (its tasks in order of planned
start, on their planned devices) and with the critical-path order on the
earliest-finishing devices, so their best is never worse than HEFT's plan.
The objective is the mean completion time of the jobs being planned (for one
job: its makespan), with the makespan as a tie-breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rlsched.pool import fits_memory
from rlsched.schedulers.heft import expected_finish_of_running, heft_plan
from rlsched.schedulers.plan import Plan, planned_cost
from rlsched.schedulers.upward_ranks import upward_rank
from rlsched.view import ClusterView, TaskState

_UNSTARTED = (int(TaskState.BLOCKED), int(TaskState.READY))

#: device gene meaning "the device where the task would finish first"
AUTO = -1


@dataclass
class Decoded:
    """Schedules of a population: objective per candidate, times per task."""

    objective: np.ndarray  # (K,)
    start: np.ndarray  # (K, T)
    finish: np.ndarray  # (K, T)
    device: np.ndarray  # (K, T) column index into SearchProblem.cost


@dataclass
class SearchProblem:
    """The unstarted tasks of a view, as arrays.

    Column ``G`` of ``cost`` is the host, where CPU-only tasks run without
    contention; a task's cost is infinite on a device that lacks its memory.
    """

    tasks: np.ndarray  # (T,) global task indices
    devices: np.ndarray  # (G,) view device index of each cost column
    cost: np.ndarray  # (T, G + 1)
    children: np.ndarray  # (T, T) bool, [p, c]: c is a child of p
    pending: np.ndarray  # (T,) unfinished parents among the planned tasks
    ready: np.ndarray  # (T,) earliest start from done/running parents and now
    free: np.ndarray  # (G + 1,) when each device frees
    job_segments: np.ndarray  # first planned task of each planned job
    job_arrival: np.ndarray  # arrival of each planned job
    job_floor: np.ndarray  # expected end of each planned job's running tasks
    rank: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (T,) upward rank at mean speeds

    @property
    def n_tasks(self) -> int:
        return self.tasks.size

    @property
    def feasible(self) -> np.ndarray:
        return np.isfinite(self.cost)

    @classmethod
    def from_view(cls, view: ClusterView) -> SearchProblem:
        tb, now, state = view.table, view.time, view.task_state
        healthy = [d.index for d in view.devices if d.healthy]
        last = tb.job_start[view.n_arrived]
        planned = [t for t in range(last) if state[t] in _UNSTARTED]
        cost = np.full((len(planned), len(healthy) + 1), np.inf)
        ruled = view.constrained
        for i, t in enumerate(planned):
            if not tb.gpu[t]:
                cost[i, -1] = view.predicted[t]
                continue
            for j, d in enumerate(healthy):
                if fits_memory(tb.memory[t], view.devices[d].memory_total) and (
                        not ruled or view.may_use(t, d)):
                    cost[i, j] = planned_cost(view, t, d)
        # a task no healthy device can hold waits for one to return: leave it,
        # and everything after it, out of this plan
        dropped = {t for t, ok in zip(planned, np.isfinite(cost).any(axis=1)) if not ok}
        for t in planned:  # parents come first
            if any(p in dropped for p in tb.parents[t]):
                dropped.add(t)
        if dropped:
            keep = [i for i, t in enumerate(planned) if t not in dropped]
            planned, cost = [planned[i] for i in keep], cost[keep]
        index = {t: i for i, t in enumerate(planned)}
        n = len(planned)
        children = np.zeros((n, n), dtype=bool)
        pending = np.zeros(n, dtype=np.int64)
        ready = np.full(n, now)
        finish_running, busy_until = expected_finish_of_running(view)
        for i, t in enumerate(planned):
            for p in tb.parents[t]:
                if p in index:
                    children[index[p], i] = True
                    pending[i] += 1
                elif p in finish_running:
                    ready[i] = max(ready[i], finish_running[p])
        free = np.array([busy_until.get(d, now) for d in healthy] + [now])
        job_of = np.array([tb.job_of[t] for t in planned], dtype=np.int64)
        segments = np.flatnonzero(np.r_[True, job_of[1:] != job_of[:-1]]) if n else np.zeros(0, int)
        jobs = job_of[segments] if n else np.zeros(0, int)
        floor = np.zeros(jobs.size)
        for t, end in finish_running.items():
            hit = np.flatnonzero(jobs == tb.job_of[t])
            if hit.size:
                floor[hit[0]] = max(floor[hit[0]], end)
        mean_cost = np.where(np.isfinite(cost), cost, np.nan)
        mean = np.nan_to_num(np.nanmean(mean_cost, axis=1)) if n else np.zeros(0)
        kids = [np.flatnonzero(children[i]).tolist() for i in range(n)]
        return cls(np.array(planned, dtype=np.int64), np.array(healthy, dtype=np.int64), cost,
                   children, pending, ready, free, segments,
                   np.array([tb.jobs[j].arrival for j in jobs]), floor,
                   np.array(upward_rank(mean.tolist(), kids)))

    def decode(self, keys: np.ndarray, device: np.ndarray | None = None) -> Decoded:
        """Decode ``keys`` (K, T) on ``device`` (K, T) columns or :data:`AUTO`
        genes; ``None``: every gene AUTO."""
        k, n = keys.shape
        g1 = self.cost.shape[1]
        host = g1 - 1
        rows = np.arange(k)
        pending = np.broadcast_to(self.pending, (k, n)).copy()
        ready = np.broadcast_to(self.ready, (k, n)).copy()
        free = np.broadcast_to(self.free, (k, g1)).copy()
        start = np.zeros((k, n))
        finish = np.zeros((k, n))
        if device is None:
            device = np.full((k, n), AUTO, dtype=np.int64)
        chosen = np.zeros((k, n), dtype=np.int64)
        placed = np.zeros((k, n), dtype=bool)
        neg = np.full((k, n), -np.inf)
        for _ in range(n):
            eligible = (pending == 0) & ~placed
            t = np.argmax(np.where(eligible, keys, neg), axis=1)
            rt = ready[rows, t]
            d = device[rows, t]
            auto = d == AUTO
            if auto.any():
                options = np.maximum(free, rt[:, None]) + self.cost[t]
                d = np.where(auto, np.argmin(options, axis=1), d)
            chosen[rows, t] = d
            s = np.maximum(rt, free[rows, d])
            f = s + self.cost[t, d]
            free[rows, d] = f
            free[:, host] = 0.0
            start[rows, t] = s
            finish[rows, t] = f
            placed[rows, t] = True
            kids = self.children[t]
            pending -= kids
            np.maximum(ready, np.where(kids, f[:, None], 0.0), out=ready)
        return Decoded(self.objective(finish), start, finish, chosen)

    def objective(self, finish: np.ndarray) -> np.ndarray:
        if finish.shape[1] == 0:
            return np.zeros(finish.shape[0])
        job_end = np.maximum(np.maximum.reduceat(finish, self.job_segments, axis=1),
                             self.job_floor)
        jct = (job_end - self.job_arrival).mean(axis=1)
        # ties (integer runtimes make many) go to the schedule that finishes
        # its tasks earlier on average, which gives the search a slope
        return jct + 1e-3 * (finish.mean(axis=1) - self.free.min())

    def seeds(self, view: ClusterView) -> tuple[np.ndarray, np.ndarray]:
        """HEFT's plan, and the critical-path order on earliest-finish devices."""
        n = self.n_tasks
        plan = heft_plan(view)
        column = {int(d): j for j, d in enumerate(self.devices)}
        host = self.cost.shape[1] - 1
        order = sorted(range(n), key=lambda i: (plan.start.get(int(self.tasks[i]), np.inf),
                                                -self.rank[i], i))
        heft_keys = np.empty(n)
        heft_keys[order] = 1.0 - np.arange(n) / max(n, 1)
        heft_dev = np.array([column.get(plan.device.get(int(t), -1), host) if
                             int(t) in plan.device else host for t in self.tasks])
        cp_keys = self.rank / (self.rank.max() or 1.0)
        cp_dev = np.full(n, AUTO)
        return np.stack([heft_keys, cp_keys, heft_keys]), np.stack([heft_dev, cp_dev, cp_dev])

    def to_plan(self, keys: np.ndarray, device: np.ndarray) -> Plan:
        d = self.decode(keys[None, :], device[None, :])
        plan = Plan(priority={int(t): float(r) for t, r in zip(self.tasks, self.rank)})
        host = self.cost.shape[1] - 1
        for i, t in enumerate(self.tasks):
            col = int(d.device[0, i])
            if col == host:
                continue
            plan.device[int(t)] = int(self.devices[col])
            plan.start[int(t)] = float(d.start[0, i])
            plan.duration[int(t)] = float(self.cost[i, col])
        return plan


@dataclass
class Budget:
    """Stop after ``seconds`` of wall time, or exactly ``evaluations`` schedules
    when given (deterministic)."""

    seconds: float = 2.0
    evaluations: int | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def spent(self, evaluations: int) -> float:
        """Fraction of the budget used (>= 1: stop)."""
        if self.evaluations is not None:
            return evaluations / self.evaluations
        return (time.perf_counter() - self._t0) / self.seconds


@dataclass
class SearchResult:
    keys: np.ndarray
    device: np.ndarray
    objective: float
    evaluations: int
    history: list[tuple[int, float]]  # (evaluations, best objective so far)


def _random_devices(problem: SearchProblem, rng: np.random.Generator, shape) -> np.ndarray:
    """A feasible device column for each task, or AUTO, uniformly."""
    weights = rng.random(shape + (problem.cost.shape[1],)) * problem.feasible[None, :, :]
    return np.where(rng.random(shape) < 0.5, AUTO, weights.argmax(axis=-1))


def genetic(problem: SearchProblem, seed_keys: np.ndarray, seed_dev: np.ndarray,
            rng: np.random.Generator, budget: Budget, population: int = 48,
            elite: int = 4, key_sigma: float = 0.08, mutation: float = 0.08) -> SearchResult:
    """Genetic algorithm: tournament selection, uniform crossover of both
    genes, Gaussian key noise and feasible device reassignment, elitism."""
    n = problem.n_tasks
    budget.start()
    keys = rng.random((population, n))  # random orders on earliest-finish devices
    dev = np.full((population, n), AUTO, dtype=np.int64)
    s = seed_keys.shape[0]
    keys[:s], dev[:s] = seed_keys, seed_dev
    for i in range(s, 3 * population // 4):  # mutants of the seeds
        j = i % s
        keys[i] = seed_keys[j] + rng.normal(0, key_sigma, n) * (rng.random(n) < 0.3)
        dev[i] = seed_dev[j]
    evaluations, history = 0, []
    best: tuple[float, np.ndarray, np.ndarray] = (np.inf, keys[0].copy(), dev[0].copy())
    while True:
        obj = problem.decode(keys, dev).objective
        evaluations += population
        i = int(np.argmin(obj))
        if obj[i] < best[0]:
            best = (float(obj[i]), keys[i].copy(), dev[i].copy())
        history.append((evaluations, best[0]))
        if budget.spent(evaluations) >= 1.0:
            break
        order = np.argsort(obj, kind="stable")
        children = population - elite
        a = rng.integers(population, size=(2, children))
        b = rng.integers(population, size=(2, children))
        pa = np.where(obj[a[0]] <= obj[a[1]], a[0], a[1])
        pb = np.where(obj[b[0]] <= obj[b[1]], b[0], b[1])
        take = rng.random((children, n)) < 0.5
        child_keys = np.where(take, keys[pa], keys[pb])
        child_dev = np.where(take, dev[pa], dev[pb])
        child_keys += rng.normal(0, key_sigma, (children, n)) * (rng.random((children, n)) < mutation)
        flip = rng.random((children, n)) < mutation / 2
        child_dev = np.where(flip, _random_devices(problem, rng, (children, n)), child_dev)
        keys = np.concatenate([keys[order[:elite]], child_keys])
        dev = np.concatenate([dev[order[:elite]], child_dev])
    return SearchResult(best[1], best[2], best[0], evaluations, history)


def annealing(problem: SearchProblem, seed_keys: np.ndarray, seed_dev: np.ndarray,
              rng: np.random.Generator, budget: Budget, chains: int = 32,
              start_temperature: float = 0.02, end_temperature: float = 1e-4) -> SearchResult:
    """Simulated annealing in ``chains`` parallel chains, decoded together.

    A move perturbs one task's key (a shift in the order) or, one time in
    three, moves one task to another feasible device. Temperatures are
    fractions of the seeds' objective, cooled geometrically over the budget.
    """
    n = problem.n_tasks
    budget.start()
    s = seed_keys.shape[0]
    keys = np.concatenate([seed_keys[np.arange(chains) % s]])
    dev = np.concatenate([seed_dev[np.arange(chains) % s]])
    obj = problem.decode(keys, dev).objective
    evaluations = chains
    i = int(np.argmin(obj))
    best = (float(obj[i]), keys[i].copy(), dev[i].copy())
    history = [(evaluations, best[0])]
    scale = best[0] if np.isfinite(best[0]) and best[0] > 0 else 1.0
    rows = np.arange(chains)
    while budget.spent(evaluations) < 1.0 and n:
        frac = min(budget.spent(evaluations), 1.0)
        temp = scale * start_temperature * (end_temperature / start_temperature) ** frac
        new_keys, new_dev = keys.copy(), dev.copy()
        task = rng.integers(n, size=chains)
        move_device = rng.random(chains) < 1 / 3
        new_keys[rows, task] += np.where(move_device, 0.0, rng.normal(0, 0.1, chains))
        other = (rng.random((chains, problem.cost.shape[1])) * problem.feasible[task]).argmax(1)
        other = np.where(rng.random(chains) < 0.5, AUTO, other)
        new_dev[rows, task] = np.where(move_device, other, dev[rows, task])
        new_obj = problem.decode(new_keys, new_dev).objective
        evaluations += chains
        delta = new_obj - obj
        with np.errstate(over="ignore", invalid="ignore"):
            accept = (delta <= 0) | (rng.random(chains) < np.exp(-delta / max(temp, 1e-12)))
        keys[accept], dev[accept], obj[accept] = new_keys[accept], new_dev[accept], new_obj[accept]
        i = int(np.argmin(obj))
        if obj[i] < best[0]:
            best = (float(obj[i]), keys[i].copy(), dev[i].copy())
        history.append((evaluations, best[0]))
    return SearchResult(best[1], best[2], best[0], evaluations, history)


ALGORITHMS: dict[str, Callable[..., SearchResult]] = {"ga": genetic, "sa": annealing}
