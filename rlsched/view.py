"""The cluster view: the one read-only snapshot every policy decides from.

Both the simulator and the live runtime produce it; heuristics and the
learned policy read only it. It holds knowledge, never truth: what a task
will take is the runtime model's prediction (:attr:`ClusterView.predicted`,
with its spread), and for a running task, how long it has run; the true
runtime stays in the simulator. It never changes during a decision: dynamic
columns are copies, static ones (:class:`WorkloadTable`, :class:`Pool`) are
immutable. A policy answers with :class:`Placement` s, or none to wait.

The per-task columns (``task_state``, ``predicted``, ``spread``) are the
producer's own arrays, not copies, and ``job_attained`` is summed only when
read: copying tens of thousands of numbers at every decision
would make a decision's cost grow with the instance. They hold still for the
decision; a policy that keeps something across decisions keys its cache on
:attr:`ClusterView.knowledge` and copies what it keeps. For the same reason
the ready set's changes are offered as a log (:class:`ReadyCursor`), so that
a scheduler keeping its own ordering of the queue updates it instead of
sorting the whole queue again.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from enum import IntEnum
from typing import NamedTuple, cast, overload

from rlsched.pool import Pool, fits_memory
from rlsched.table import WorkloadTable


class _EveryKind:
    """A container that holds every history key: what a producer that knows
    every runtime (exact estimates) offers as :attr:`ClusterView.known_kinds`."""

    __slots__ = ()

    def __contains__(self, key: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "EVERY_KIND"


#: every kind known: exact estimates, or a producer that keeps no history
EVERY_KIND: Container[str] = _EveryKind()


class TaskState(IntEnum):
    """Lifecycle of a task; the codes of :attr:`ClusterView.task_state`."""

    UNARRIVED = 0  # its job has not arrived
    BLOCKED = 1  # some parent has not finished
    READY = 2  # may start now
    RUNNING = 3
    DONE = 4


class Placement(NamedTuple):
    """Start task ``task`` (global index) on device ``device``; a task of
    ``gpus: N`` names its other ``N - 1`` devices in ``gang``, all of them
    taken at once."""

    task: int
    device: int
    gang: tuple[int, ...] = ()

    @property
    def devices(self) -> tuple[int, ...]:
        """Every device the task starts on, ``device`` first."""
        return (self.device, *self.gang) if self.gang else (self.device,)


class RunningTask(NamedTuple):
    """A task running on ``device`` since ``start``. A gang (a task of
    several GPUs) appears once per device it holds, each entry naming one."""

    task: int
    device: int  # -1 for a CPU-only task
    start: float


class DeviceTelemetry(NamedTuple):
    """One telemetry sample of one device, in NVML's terms.

    Utilisation is a fraction (0..1); memory is GiB; power watts; clocks MHz.
    ``n_tasks`` counts the tasks this scheduler runs there; memory used and
    utilisation include processes it did not start.
    """

    index: int  # type: ignore[assignment]  # NVML's word; shadows tuple.index, never called
    utilization: float
    memory_used: float
    memory_total: float
    temperature_c: float
    power_w: float
    power_limit_w: float
    sm_clock_mhz: float
    max_sm_clock_mhz: float
    healthy: bool
    n_tasks: int

    @property
    def memory_free(self) -> float:
        return self.memory_total - self.memory_used

    @property
    def clock_ratio(self) -> float:
        """Clock against its maximum: below 1 when throttled."""
        return self.sm_clock_mhz / self.max_sm_clock_mhz if self.max_sm_clock_mhz else 0.0


class ClusterView(NamedTuple):
    """What a scheduler sees at one decision point.

    Immutable, and a named tuple rather than a frozen dataclass: the
    simulator builds one at every decision, and a tuple is built at a
    quarter of the cost.

    :param time: seconds since the episode began
    :param table: every task and job (static)
    :param pool: the devices' nominal models (static); live drift shows only
        in ``devices``
    :param task_state: one :class:`TaskState` code per task (bytes; from the
        simulator, its own bytearray, read in place)
    :param ready: GPU tasks that may start now, oldest first (CPU-only tasks
        start by themselves and never wait here); a tuple, or from the
        simulator a :class:`ReadyQueue` read where it is kept
    :param running: what runs where, since when
    :param devices: one telemetry sample per device. A producer may hand one
        sample (the same object) to several views of an episode only while
        nothing on its device changed (tasks, memory, clock, health): what a
        scheduler derives from a sample it keeps until the sample is replaced
        (:mod:`rlsched.schedulers.device_columns`)
    :param job_remaining: predicted reference-seconds of unfinished work per job
    :param n_arrived: jobs ``0..n_arrived-1`` have arrived
    :param predicted: each task's predicted runtime on the reference device
        (the median belief of :mod:`rlsched.runtime_model`; exact estimates:
        the truth); for a finished task, what it took (its seconds times
        its device's speed)
    :param spread: the log-space spread of each prediction (0: certain, as
        for a finished task)
    :param job_attained: device-seconds of GPU service each job has received
        (its attempts so far, ended or running): what a scheduler that
        knows no runtimes ranks by (:mod:`rlsched.schedulers.las`)
    :param knowledge: changes whenever any of ``predicted`` or ``spread``
        changes (within one producer and episode): what a cache of derived
        numbers is keyed on
    :param open_knowledge: changes whenever the prediction of a task that has
        not finished changes (a task's finishing alone leaves it): what is
        derived from unfinished tasks only, such as upward ranks of ready
        tasks, is keyed on it
    :param ready_log: where the producer keeps one, every change of the ready
        set this episode, in order: ``t`` when task ``t`` became ready, ``~t``
        when it left (placed); one list per episode (see :class:`ReadyCursor`)
    :param ready_mark: how much of ``ready_log`` this view has seen
    :param belief_log: where the producer keeps one, each re-prediction of
        unfinished tasks this episode, in order: the history key whose open
        tasks' predictions changed (a scheduler that derives numbers from
        predictions updates those of that key's tasks, not all of them)
    :param belief_mark: how much of ``belief_log`` this view has seen
    :param known_kinds: the history keys (:attr:`WorkloadTable.history_key`)
        with at least one finished run in the runtime model's history; a
        task of any other kind is predicted from its estimate and every
        kind's runs alone (:data:`EVERY_KIND`: every runtime is known)
    """

    time: float
    table: WorkloadTable
    pool: Pool
    task_state: bytes | bytearray
    ready: Sequence[int]
    running: tuple[RunningTask, ...]
    devices: tuple[DeviceTelemetry, ...]
    job_remaining: tuple[float, ...]
    n_arrived: int
    predicted: Sequence[float]
    spread: Sequence[float]
    job_attained: Sequence[float]
    knowledge: int = 0
    open_knowledge: int = 0
    ready_log: list[int] | None = None
    ready_mark: int = 0
    known_kinds: Container[str] = EVERY_KIND
    belief_log: list[str] | None = None
    belief_mark: int = 0

    def snapshot(self) -> ClusterView:
        """This view with its own copies of what the producer keeps changing
        (the ready queue, the predictions): one to keep past the decision."""
        return self._replace(task_state=bytes(self.task_state), ready=tuple(self.ready),
                             predicted=tuple(self.predicted), spread=tuple(self.spread),
                             job_attained=tuple(self.job_attained), ready_log=None,
                             ready_mark=0, belief_log=None, belief_mark=0,
                             known_kinds=self.known_kinds
                             if self.known_kinds is EVERY_KIND
                             else frozenset(cast("Iterable[str]", self.known_kinds)))

    def fits(self, task: int, device: int) -> bool:
        """Whether ``device`` is healthy, has memory free for ``task`` now, and
        the task may use it (its ``gpus_allowed`` / ``gpus_avoid``)."""
        d = self.devices[device]
        return d.healthy and fits_memory(self.table.memory[task], d.memory_free) and \
            self.may_use(task, device)

    def gpus(self, task: int) -> int:
        """How many GPUs ``task`` takes at once (0: CPU-only; above 1: a gang)."""
        return self.table.gpus[task]

    def may_use(self, task: int, device: int) -> bool:
        """Whether the task's placement rules let it run on ``device`` at all.
        Every scheduler asks, where :attr:`constrained`."""
        return self.table.may_use(task, device, self.pool.devices[device].model.name)

    @property
    def constrained(self) -> bool:
        """Whether any task has placement rules (else :meth:`may_use` is always True)."""
        return self.table.placement is not None

    def nominal_runtime(self, task: int, device: int) -> float:
        """Seconds ``task`` is predicted to take alone on ``device`` at its nominal speed."""
        model = self.pool.devices[device].model
        if self.table.speeds is not None:  # the task's own measured speeds
            return self.predicted[task] / self.table.speed(task, model)
        speed = model.memory_speed if self.table.kind[task] == 1 else model.compute_speed
        return self.predicted[task] / speed

    def elapsed(self, task: int, start: float) -> float:
        """Seconds a task started at ``start`` has been running."""
        return max(self.time - start, 0.0)


class ReadyCursor:
    """Where a scheduler's own copy of the ready set stands in a view's
    :attr:`ClusterView.ready_log`: :meth:`changes` says what to add and
    remove since it last looked, or that it must start again from
    ``view.ready`` (a new episode, a fork, or a producer without a log)."""

    __slots__ = ("_log", "_mark")

    def __init__(self) -> None:
        self._log: list[int] | None = None
        self._mark = 0

    def changes(self, view: ClusterView) -> list[int] | None:
        """The log's entries since the last call (``t`` became ready, ``~t``
        left), or None: rebuild from ``view.ready``."""
        log, mark = view.ready_log, view.ready_mark
        if log is None or log is not self._log or mark < self._mark:
            self._log, self._mark = log, mark
            return None
        out = log[self._mark:mark]
        self._mark = mark
        return out



class ReadyQueue(Sequence[int]):
    """The ready tasks, oldest first, read in place from the insertion-ordered
    dict the simulator keeps them in: a scheduler that reads only the head
    of a long queue (or, with :class:`ReadyCursor`, only its changes) pays
    nothing for the rest. Like the view's other columns it holds still for
    the decision only. Indexing makes a tuple once; iteration, ``len`` and
    ``in`` read the dict."""

    __slots__ = ("_keys", "_tuple")

    def __init__(self, keys: dict[int, None]) -> None:
        self._keys = keys
        self._tuple: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[int]:
        return iter(self._keys)

    def __contains__(self, task: object) -> bool:
        return task in self._keys

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[int, ...]: ...

    def __getitem__(self, i: int | slice) -> int | tuple[int, ...]:
        if self._tuple is None:
            self._tuple = tuple(self._keys)
        return self._tuple[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (ReadyQueue, tuple, list)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"ReadyQueue({tuple(self)!r})"


class AttainedService(Sequence[float]):
    """Each job's attained GPU service at one moment, summed only when first
    read: the device-seconds of its ended attempts (``ended``, the
    producer's own list) plus what its ``running`` entries have run until
    ``now``. Most schedulers never read it; those that do pay once per
    view. Like the view's other columns it holds still for the decision only.

    A producer that keeps its running tasks by job (``by_job``: the running
    tasks of each job that has any, in the order they started, the running
    entry of each task, and each gang's devices) lets one job be read
    alone (:meth:`of`, and indexing before anything has read all of them),
    at the cost of that job's attempts: the same float as the sum over
    every job, whose additions for one job come in the same order (its
    tasks' entries as they started, then its gangs' other devices)."""

    __slots__ = ("_ended", "_running", "_job_of", "_now", "_values", "_by_job")

    def __init__(self, ended: Sequence[float], running: Sequence[RunningTask],
                 job_of: Sequence[int], now: float,
                 by_job: tuple[Mapping[int, Iterable[int]], Mapping[int, RunningTask],
                               Mapping[int, tuple[int, ...]]] | None = None) -> None:
        self._ended, self._running, self._job_of, self._now = ended, running, job_of, now
        self._values: tuple[float, ...] | None = None
        self._by_job = by_job

    @property
    def per_job(self) -> bool:
        """Whether one job can be read alone, without summing them all."""
        return self._by_job is not None

    def of(self, job: int) -> float:
        """Job ``job``'s attained service: ``self[job]``, summing only its own
        attempts where the producer keeps them by job."""
        if self._values is not None or self._by_job is None:
            return self._sum()[job]
        tasks, entries, gangs = self._by_job
        now, attained = self._now, self._ended[job]
        mine = tasks.get(job, ())
        for t in mine:
            r = entries[t]
            if r.device >= 0:
                attained += now - r.start
        for t in mine:
            members = gangs.get(t)
            if members:
                start = entries[t].start
                for _ in members[1:]:
                    attained += now - start
        return attained

    def holding(self, job: int) -> int:
        """How many devices job ``job``'s running attempts hold now (the rate
        at which its attained service grows); needs ``by_job``."""
        if self._by_job is None:
            raise ValueError("this producer does not keep its running tasks by job")
        tasks, entries, gangs = self._by_job
        held = 0
        for t in tasks.get(job, ()):
            members = gangs.get(t)
            held += len(members) if members else entries[t].device >= 0
        return held

    def _sum(self) -> tuple[float, ...]:
        if self._values is None:
            attained, job_of, now = list(self._ended), self._job_of, self._now
            for r in self._running:
                if r.device >= 0:
                    attained[job_of[r.task]] += now - r.start
            self._values = tuple(attained)
        return self._values

    def __len__(self) -> int:
        return len(self._ended)

    def __iter__(self) -> Iterator[float]:
        return iter(self._sum())

    @overload
    def __getitem__(self, i: int) -> float: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[float, ...]: ...

    def __getitem__(self, i: int | slice) -> float | tuple[float, ...]:
        if isinstance(i, int) and i >= 0:
            return self.of(i)
        return self._sum()[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (AttainedService, tuple, list)):
            return self._sum() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._sum())

    def __repr__(self) -> str:
        return f"AttainedService({self._sum()!r})"
