"""The workload model: tasks, jobs (DAGs of tasks) and instances (sets of jobs).

A *task* is one unit of work, either on one GPU or CPU-only. Its ``work`` is its
true runtime in seconds on the reference device (an RTX 3090, speed 1.0), or
the measured runtime where the source recorded one: the simulator's secret,
which no scheduler sees (:mod:`rlsched.table` leaves it out). What a
scheduler may know is its ``estimate``, the user's guess, and what the
runtime model (:mod:`rlsched.runtime_model`) predicts from history. A *job* is a DAG of tasks with
an arrival time, a priority and an optional deadline. An *instance* is what a
scheduler is evaluated on: one or more jobs, and the known optimum where the
source proves one.

These are small frozen dataclasses for loading and validation; the simulator
flattens them into arrays (:mod:`rlsched.table`) for its hot loop.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rlsched.errors import InputError
from rlsched.pool import CATALOGUE, GpuModel, Pool, fits_memory

if TYPE_CHECKING:
    import networkx as nx

#: Task kinds. A GPU's speed differs by kind (see :mod:`rlsched.pool`).
KINDS = ("compute", "memory")

#: The longest job name or task id a job file may use.
MAX_NAME_LENGTH = 128
#: Job names and task ids a job file may use: ASCII letters, digits, ``_``,
#: ``-`` and ``.``, not starting with ``.`` or ``-``. Names are data, never
#: paths: the live runtime names its files by attempt id, and this rule keeps
#: names unambiguous in ``JOB/TASK``, on a command line and in a metric label.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
NAME_RULE = ("letters, digits, '_', '-' and '.', not starting with '.' or '-', at most "
             f"{MAX_NAME_LENGTH} characters")


def check_name(name: str, source: str, what: str) -> None:
    """Raise :class:`InputError` unless ``name`` follows :data:`NAME_PATTERN`.

    :param what: how the message calls it (``"job name"``, ``"job 'j': task id"``)
    """
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise InputError(source, f"{what} {shown!r} is not allowed (use {NAME_RULE})")


@dataclass(frozen=True)
class Task:
    """One task of a job.

    :param id: unique within its job
    :param work: true seconds on the reference device, known to the simulator
        only (``None`` in the live runtime, where nobody knows it in advance)
    :param estimate: the user's estimate of ``work`` (``None``: none given)
    :param category: what kind of task it is, for runtime history (the
        WfCommons category; by default a job file's task id under its job's
        family name, see :func:`rlsched.runtime_model.history_key`)
    :param kind: ``"compute"`` or ``"memory"`` bound; picks the device speed used
    :param gpu_memory: GiB of GPU memory the task needs
    :param gpus: how many GPUs it takes at once: 1 for a GPU task, N for a
        gang (all N started together, ``gpu_memory`` on each), 0 for a CPU-only task
    :param parents: ids of the tasks that must finish before this one starts
    :param data_from_parents: bytes received from each parent (edge data)
    :param command: shell command the live runtime runs (job files only)
    :param env: extra environment variables for the command
    :param workdir: working directory of the command
    :param retries: attempts allowed after a failure
    :param timeout: seconds after which an attempt is killed
    :param gpus_allowed: the devices it may run on, each a pool index (int) or
        a GPU model's name (str); empty: any
    :param gpus_avoid: devices it must not run on, the same way
    :param speeds: its own speed on the GPU models it was measured on (its
        ``work`` over its seconds alone there, as Gavel's throughputs give
        it); on other models, their speed for its ``kind``. Read through
        :func:`task_speed`, the one place a runtime comes from
    """

    id: str
    work: float | None
    kind: str = "compute"
    gpu_memory: float = 0.0
    gpus: int = 1
    parents: tuple[str, ...] = ()
    data_from_parents: tuple[float, ...] = ()
    command: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    retries: int = 0
    timeout: float | None = None
    gpus_allowed: tuple[int | str, ...] = ()
    gpus_avoid: tuple[int | str, ...] = ()
    estimate: float | None = None
    category: str | None = None
    speeds: Mapping[str, float] | None = None

    def evolve(self, **changes: object) -> Task:
        """A copy with ``changes``, unchecked: :func:`dataclasses.replace`
        without its ``__init__``, several times faster, for the simulator's
        per-episode copies (estimates drawn, the truth taken out)."""
        twin = copy.copy(self)
        for name, value in changes.items():
            object.__setattr__(twin, name, value)
        return twin

    def may_use(self, index: int, model: str) -> bool:
        """Whether :attr:`gpus_allowed` and :attr:`gpus_avoid` let it run on
        the device ``index`` of model ``model``."""
        return placement_allows(self.gpus_allowed, self.gpus_avoid, index, model)


def task_speed(speeds: Mapping[str, float] | None, kind: str, model: GpuModel) -> float:
    """A task's speed on ``model``, relative to its work: its own measured
    speed there where it has one (``speeds``), else the model's for its kind.
    The one rule the simulator, the runtime model, the bounds and every
    scheduler (through :meth:`ClusterView.nominal_runtime`) read runtimes by."""
    if speeds is not None:
        own = speeds.get(model.name)
        if own is not None:
            return own
    return model.speed(kind)


def placement_allows(allowed: tuple[int | str, ...], avoid: tuple[int | str, ...], index: int,
                     model: str) -> bool:
    """The placement rule: a device is usable if ``allowed`` is empty or names
    it, and ``avoid`` does not; an int names a pool index, a str a model."""
    def names(entry: int | str) -> bool:
        return entry == index if isinstance(entry, int) else entry == model
    return (not allowed or any(names(e) for e in allowed)) and not any(names(e) for e in avoid)


@dataclass(frozen=True)
class Job:
    """A DAG of tasks that arrives at one time.

    :param name: unique within an instance
    :param tasks: the tasks; their ``parents`` name other tasks of this job
    :param arrival: seconds from the start of the episode
    :param priority: weight in the priority-weighted JCT (higher matters more)
    :param deadline: seconds after arrival by which the job should finish
    """

    name: str
    tasks: tuple[Task, ...]
    arrival: float = 0.0
    priority: float = 1.0
    deadline: float | None = None

    def at(self, arrival: float) -> Job:
        """The same job arriving at ``arrival``."""
        return replace(self, arrival=float(arrival))


@dataclass(frozen=True)
class Instance:
    """What one evaluation runs: jobs, where they came from, a known optimum.

    :param name: short name shown in tables (file stem, generator name)
    :param jobs: the jobs, in arrival order
    :param source: the file or SPEC it was loaded from, for error messages
    :param optimum: proven optimal makespan as ``{processors: (lower, upper)}``
        on identical devices, where the source ships one
    :param colocation: measured slowdowns of tasks sharing a GPU, where the
        source ships them (Gavel's table): ``(model, key a, key b) -> (a's
        fraction of its speed alone, b's)``, keys as in
        :func:`rlsched.runtime_model.history_key`; other pairs follow the
        pool's ``interference``
    """

    name: str
    jobs: tuple[Job, ...]
    source: str = ""
    optimum: Mapping[int, tuple[float, float]] = field(default_factory=dict)
    colocation: Mapping[tuple[str, str, str], tuple[float, float]] = field(default_factory=dict)

    @property
    def n_tasks(self) -> int:
        return sum(len(j.tasks) for j in self.jobs)


def validate_job(job: Job, source: str, *, require_work: bool = True) -> None:
    """Raise :class:`InputError` naming ``source``, the job and the task if
    ``job`` is not a well-formed DAG.

    Checks: duplicate ids, unknown parents, a cycle, a negative or missing
    runtime (missing is allowed only with ``require_work=False``, for the live
    runtime, which estimates it), a runtime or memory that is not a finite
    number, a bad kind, negative memory, bad ``gpus``.
    """
    where = f"job '{job.name}'"
    if not job.tasks:
        raise InputError(source, f"{where} has no tasks")
    seen: set[str] = set()
    for t in job.tasks:
        if t.id in seen:
            raise InputError(source, f"{where}: duplicate task id '{t.id}'")
        seen.add(t.id)
    for t in job.tasks:
        _validate_task(t, f"{where}, task '{t.id}'", source, seen, require_work)
    import networkx as nx  # here, not with the module: the live daemon starts without it

    graph = job_graph(job)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
    raise InputError(source, f"{where}: dependency cycle {path}")


def _validate_task(t: Task, here: str, source: str, ids: set[str], require_work: bool) -> None:
    """The checks of :func:`validate_job` on one task (``ids``: every task id of its job)."""
    # the estimate first: where no runtime is given, work is the estimate, and
    # the user wrote the estimate
    if t.estimate is not None and not (math.isfinite(t.estimate) and t.estimate >= 0):
        raise InputError(source, f"{here}: estimate {t.estimate:g} is not a duration of 0 "
                         "seconds or more")
    if t.work is None:
        if require_work:
            raise InputError(source, f"{here}: missing runtime (give 'estimate' or 'runtime')")
    elif not math.isfinite(t.work):
        raise InputError(source, f"{here}: runtime {t.work} is not a finite number")
    elif t.work < 0:
        raise InputError(source, f"{here}: negative runtime {t.work:g}")
    if t.kind not in KINDS:
        raise InputError(source, f"{here}: unknown kind '{t.kind}' (use one of {KINDS})")
    if not math.isfinite(t.gpu_memory):
        raise InputError(source, f"{here}: gpu_memory {t.gpu_memory} is not a finite number")
    if t.gpu_memory < 0:
        raise InputError(source, f"{here}: negative gpu_memory {t.gpu_memory}")
    if isinstance(t.gpus, bool) or not isinstance(t.gpus, int) or t.gpus < 0:
        raise InputError(source, f"{here}: gpus must be 0 (a CPU task) or a whole number of "
                         f"GPUs it takes at once, not {t.gpus!r}")
    for p in t.parents:
        if p not in ids:
            raise InputError(source, f"{here}: unknown parent '{p}'")
        if p == t.id:
            raise InputError(source, f"{here}: depends on itself")


def job_graph(job: Job) -> nx.DiGraph:
    """The job's DAG as a networkx graph, edges parent -> child."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(t.id for t in job.tasks)
    g.add_edges_from((p, t.id) for t in job.tasks for p in t.parents)
    return g


def validate_instance(instance: Instance, *, require_work: bool = True) -> None:
    """Validate every job and check job names are unique."""
    names: set[str] = set()
    for job in instance.jobs:
        if job.name in names:
            raise InputError(instance.source, f"duplicate job name '{job.name}'")
        names.add(job.name)
        validate_job(job, instance.source, require_work=require_work)


def validate_placement(instance: Instance, pool: Pool) -> None:
    """Raise :class:`InputError` if a GPU task's ``gpus_allowed`` and
    ``gpus_avoid`` leave it no device of ``pool`` that has its memory: no
    schedule could start it."""
    pool_name = pool.name
    models = set(CATALOGUE) | {d.model.name for d in pool.devices}
    for job in instance.jobs:
        for t in job.tasks:
            if not t.gpus or not (t.gpus_allowed or t.gpus_avoid):
                continue
            for entry in (*t.gpus_allowed, *t.gpus_avoid):
                if isinstance(entry, str) and entry not in models:
                    raise InputError(instance.source, f"job '{job.name}', task '{t.id}': "
                                     f"unknown GPU model '{entry}' in gpus_allowed/gpus_avoid "
                                     f"(known: {', '.join(sorted(models))})")
            usable = [d.model.memory_gib for d in pool.devices if t.may_use(d.index, d.model.name)]
            if not usable:
                raise InputError(instance.source, f"job '{job.name}', task '{t.id}': its "
                                 "gpus_allowed/gpus_avoid leave it no GPU of pool "
                                 f"'{pool_name}'")
            if not fits_memory(t.gpu_memory, max(usable)):
                raise InputError(instance.source, f"job '{job.name}', task '{t.id}' needs "
                                 f"{t.gpu_memory:g} GiB of GPU memory but no GPU it may use in "
                                 f"pool '{pool_name}' has that much")


def validate_fits(instance: Instance, max_memory_gib: float, pool_name: str) -> None:
    """Raise :class:`InputError` if a GPU task needs more memory than the
    largest device of the pool has: no schedule could ever start it."""
    for job in instance.jobs:
        for t in job.tasks:
            if t.gpus and not fits_memory(t.gpu_memory, max_memory_gib):
                raise InputError(
                    instance.source,
                    f"job '{job.name}', task '{t.id}' needs {t.gpu_memory:g} GiB of GPU memory "
                    f"but the largest device of pool '{pool_name}' has {max_memory_gib:g} GiB")


def validate_gangs(instance: Instance, pool: Pool) -> None:
    """Raise :class:`InputError` if a task of ``gpus: N`` can never start:
    no host of ``pool`` (nor the whole pool, where hosts are linked) has N
    devices it may use with its memory each."""
    for job in instance.jobs:
        for t in job.tasks:
            if t.gpus < 2:
                continue
            fitting: dict[str, int] = {}
            for d in pool.devices:
                if fits_memory(t.gpu_memory, d.model.memory_gib) and t.may_use(d.index, d.model.name):
                    fitting[d.host] = fitting.get(d.host, 0) + 1
            most = sum(fitting.values()) if pool.hosts_linked else max(fitting.values(), default=0)
            if most >= t.gpus:
                continue
            where = "the pool" if pool.hosts_linked else "one host"
            memory = f" with {t.gpu_memory:g} GiB each" if t.gpu_memory else ""
            raise InputError(instance.source, f"job '{job.name}', task '{t.id}' needs {t.gpus} "
                             f"GPUs at once{memory} but {where} of pool '{pool.name}' has "
                             f"{most} it may use")
