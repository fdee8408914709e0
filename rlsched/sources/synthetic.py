"""Synthetic workload generators, seeded: layered random DAGs, ML pipelines, sweeps.

Each generator takes a ``numpy.random.Generator`` and its parameters and
returns jobs; :func:`generate` makes one instance of ``jobs`` jobs. The
layered generator follows the classic DAG generators (daggen): ``width`` sets
how fat the graph is (tasks per level ~ n**width), ``regularity`` how much
level sizes vary, ``density`` the chance of an edge between levels, ``jump``
how many levels an edge may span.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rlsched.errors import InputError
from rlsched.gangs import gang_work
from rlsched.workload import Instance, Job, Task


class WeightedChoice:
    """``rng.choice(values, p=p)`` for one draw, as numpy makes it (the same
    cumulative sum, normalised in place, and one ``rng.random()`` looked up
    by ``searchsorted(side="right")``), so the same value and the same
    generator state after it, without numpy's checks of ``p`` at every call:
    a twentieth of the time, which counts where every task of a generated
    workload draws one."""

    __slots__ = ("_values", "_cdf")

    def __init__(self, values: Sequence[float], p: Sequence[float]) -> None:
        cdf = np.asarray(p, dtype=np.float64).cumsum()
        cdf /= cdf[-1]
        self._values, self._cdf = list(values), cdf.tolist()

    def __call__(self, rng: np.random.Generator) -> Any:
        return self._values[bisect_right(self._cdf, rng.random())]


_MEMORY_GIB = WeightedChoice([1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 20.0],
                             [0.2, 0.25, 0.2, 0.15, 0.1, 0.07, 0.03])


def _kind(rng: np.random.Generator) -> str:
    return "memory" if rng.random() < 0.4 else "compute"


def _memory(rng: np.random.Generator) -> float:
    return float(_MEMORY_GIB(rng))


def layered(rng: np.random.Generator, name: str, tasks: int = 50, width: float = 0.5,
            regularity: float = 0.5, density: float = 0.3, jump: int = 1,
            min_work: float = 10.0, max_work: float = 300.0) -> Job:
    """A layered random DAG of ``tasks`` GPU tasks (daggen's shape parameters)."""
    per_level = max(1.0, math.exp(width * math.log(tasks)))
    levels: list[list[int]] = []
    made = 0
    while made < tasks:
        spread = (1.0 - regularity) * per_level
        size = int(round(rng.uniform(per_level - spread, per_level + spread)))
        size = max(1, min(size, tasks - made))
        levels.append(list(range(made, made + size)))
        made += size
    parents: list[list[int]] = [[] for _ in range(tasks)]
    for li in range(1, len(levels)):
        for t in levels[li]:
            for lj in range(max(0, li - jump), li):
                for p in levels[lj]:
                    if rng.random() < density:
                        parents[t].append(p)
            if not any(p in levels[li - 1] for p in parents[t]):
                parents[t].append(int(rng.choice(levels[li - 1])))
    works = np.exp(rng.uniform(math.log(min_work), math.log(max_work), size=tasks))
    return Job(name, tuple(
        Task(id=f"t{t}", work=round(float(works[t]), 3), kind=_kind(rng),
             gpu_memory=_memory(rng), parents=tuple(f"t{p}" for p in sorted(set(parents[t]))))
        for t in range(tasks)))


def pipeline(rng: np.random.Generator, name: str, trainings: int = 4) -> Job:
    """prepare (CPU) -> ``trainings`` trainings -> evaluate each -> report (CPU)."""
    tasks = [Task("prepare", round(float(rng.uniform(60, 300)), 1), gpus=0)]
    for i in range(trainings):
        tasks.append(Task(f"train{i}", round(float(rng.uniform(600, 3600)), 1), "compute",
                          float(rng.choice([8.0, 12.0, 16.0, 20.0])), parents=("prepare",)))
        tasks.append(Task(f"eval{i}", round(float(rng.uniform(60, 300)), 1), "memory",
                          float(rng.choice([2.0, 4.0, 8.0])), parents=(f"train{i}",)))
    tasks.append(Task("report", round(float(rng.uniform(10, 60)), 1), gpus=0,
                      parents=tuple(f"eval{i}" for i in range(trainings))))
    return Job(name, tuple(tasks))


def sweep(rng: np.random.Generator, name: str, points: int = 8) -> Job:
    """``points`` independent trainings of one model feeding one aggregation."""
    base = float(rng.uniform(300, 1800))
    memory = _memory(rng)
    kind = _kind(rng)
    tasks = [Task(f"point{i}", round(base * float(rng.uniform(0.7, 1.3)), 1), kind, memory)
             for i in range(points)]
    tasks.append(Task("aggregate", round(float(rng.uniform(30, 120)), 1), "memory", 2.0,
                      parents=tuple(f"point{i}" for i in range(points))))
    return Job(name, tuple(tasks))


def mixed(rng: np.random.Generator, name: str) -> Job:
    """One job of a random family: a layered DAG, a pipeline or a sweep."""
    family = int(rng.integers(3))
    if family == 0:
        return layered(rng, name, tasks=int(rng.integers(10, 60)))
    if family == 1:
        return pipeline(rng, name, trainings=int(rng.integers(2, 8)))
    return sweep(rng, name, points=int(rng.integers(3, 12)))


#: GPUs per training run in Gavel's Philly-derived trace ``0e4a51`` (1,181
#: jobs: 37% take 1 GPU, 19% 2, 38% 4, 6% 8), which ``gangs`` draws from
GANG_SIZES = np.array([1, 2, 4, 8])
GANG_SIZE_P = np.array([436, 226, 451, 68]) / 1181
_GANG_SIZE = WeightedChoice(GANG_SIZES.tolist(), GANG_SIZE_P.tolist())


def gangs(rng: np.random.Generator, name: str, max_gpus: int = 8) -> Job:
    """A job of a pool that trains with several GPUs at once: a sweep of
    1-GPU runs, or data-parallel training of 2, 4 or 8 GPUs (gangs), sized as
    in a real GPU cluster's trace (:data:`GANG_SIZES`; ``max_gpus`` caps
    them, for a smaller pool).

    A sweep is 2 to 6 runs of 5 to 30 minutes and an aggregation; a training
    run is CPU preparation, then the gang, whose single-GPU work of 30
    minutes to 4 hours is spread over its GPUs by the scaling curve of
    :func:`rlsched.gangs.gang_work`, then a 1-GPU evaluation.
    """
    size = int(_GANG_SIZE(rng))
    size = min(size, max_gpus)
    if size == 1:
        return sweep(rng, name, points=int(rng.integers(2, 7)))
    single = float(np.exp(rng.uniform(math.log(1800), math.log(14400))))
    memory = float(rng.choice([8.0, 12.0, 16.0, 20.0]))
    return Job(name, (
        Task("prepare", round(float(rng.uniform(60, 300)), 1), gpus=0),
        Task("train", round(gang_work(single, size), 1), "compute", memory, gpus=size,
             parents=("prepare",)),
        Task("evaluate", round(float(rng.uniform(60, 300)), 1), "memory",
             float(rng.choice([2.0, 4.0, 8.0])), parents=("train",)),
    ))


#: jobs per instance where ``jobs=`` is not given: a family that is a
#: pool's stream of jobs (``gangs``) makes one; the others one job each
DEFAULT_JOBS = {"gangs": 60}

GENERATORS: dict[str, Callable[..., Job]] = {
    "layered": layered, "pipeline": pipeline, "sweep": sweep, "mixed": mixed, "gangs": gangs,
}


def generate(generator: str, params: dict[str, str], seed: int, source: str) -> Instance:
    """One instance of ``jobs`` jobs (default 1) from a named generator."""
    try:
        make = GENERATORS[generator]
    except KeyError:
        raise InputError(source, f"unknown generator '{generator}' "
                                 f"(known: {', '.join(GENERATORS)})") from None
    params = dict(params)
    n_jobs = _int_param(params.pop("jobs", str(DEFAULT_JOBS.get(generator, 1))), source, "jobs")
    kwargs = {k: _typed(make, k, v, source) for k, v in params.items()}
    rng = np.random.default_rng([seed, _stable(generator)])
    try:
        jobs = tuple(make(rng, f"{generator}{i}", **kwargs) for i in range(n_jobs))
    except ValueError as e:
        raise InputError(source, f"bad generator parameters ({e})") from None
    return Instance(name=generator, jobs=jobs, source=source)


def _stable(text: str) -> int:
    return sum(ord(c) * 131**i for i, c in enumerate(text)) % 2**31


def _int_param(v: str, source: str, key: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise InputError(source, f"parameter {key}={v!r} is not an integer") from None
    if n < 1:
        raise InputError(source, f"parameter {key} must be at least 1, not {n}")
    return n


def _typed(make: Callable[..., Job], key: str, value: str, source: str) -> Any:
    defaults = make.__defaults__ or ()
    names = make.__code__.co_varnames[2:make.__code__.co_argcount]
    known = dict(zip(names[len(names) - len(defaults):], defaults))
    if key not in known:
        raise InputError(source, f"unknown parameter '{key}' for this generator "
                                 f"(known: jobs, {', '.join(known) or 'none'})")
    kind = type(known[key])
    try:
        out = kind(value)
    except ValueError:
        raise InputError(source, f"parameter {key}={value!r} is not a {kind.__name__}") from None
    if kind is int and out < 1:
        raise InputError(source, f"parameter {key} must be at least 1, not {out}")
    return out
