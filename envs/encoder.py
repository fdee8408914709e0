"""The observation encoder: a plain function of the cluster view.

The Gymnasium environment and the deployed policy both call :func:`encode`,
so a policy sees in production exactly what it saw in training. It reads
only the view (and statics derived from the view's table and pool), never
the simulator.

Every feature block's columns are an enum (:class:`TaskColumn`,
:class:`EdgeColumn`, :class:`DeviceColumn`, :class:`QueueColumn`), each
column documented with its unit and normalisation where it is named. The
code writes columns by these names, the spaces take their sizes from them,
and the tables below (and in :class:`envs.dag_env.DagSchedulingEnv`) are
generated from them, so none can drift from the others.

Layout (``M`` = :class:`Maxima`; every float is float32). Durations
("log-duration") are ``log1p(seconds / scale)``, ``scale`` being the mean
predicted runtime on the reference device of the GPU tasks of the jobs in
the system (arrived, not finished), in this view (:meth:`EpisodeStatics.rescale`).
Every runtime here is a prediction (:attr:`ClusterView.predicted`),
never the truth, and the scale reads no job the daemon would not have: the
same in simulation as live.

``tasks`` (M.tasks x {len(TaskColumn)})
    A window of the unfinished tasks of the jobs that have arrived: the ready
    GPU tasks first (those of the job with the least remaining work first, as
    shortest-remaining-time policies want them; within a job, longest
    remaining critical path first, as makespan policies want), then running
    tasks, then blocked tasks with the fewest unfinished parents first (the
    nearest descendants), each group by remaining critical path. Row ``i <
    M.ready`` that is ready is *ready slot* ``i`` of the action space; a task
    an advisor would place is always in a slot, so every advice can be
    followed. Columns (:class:`TaskColumn`):

    {TaskColumn}

``task_mask`` (M.tasks): 1 for a filled row.

``task_job`` (M.tasks): the row's job as a window-local slot (0, 1, ... in
    order of first appearance), so a policy can sum over each job's tasks.

``edges`` (M.edges x {len(EdgeColumn)}) and ``edge_mask`` (M.edges): parent -> child pairs
    of window rows, as floats. An edge list rather than an adjacency matrix:
    it stays small in rollout buffers (2 x 256 numbers against 64 x 64) and
    feeds scatter-add message passing directly. Columns (:class:`EdgeColumn`):

    {EdgeColumn}

``devices`` (M.devices x {len(DeviceColumn)}), ``device_mask`` (M.devices): one row per
    device of the pool, in pool order. Columns (:class:`DeviceColumn`):

    {DeviceColumn}

``queue`` ({len(QueueColumn)}): global features. Columns (:class:`QueueColumn`):

    {QueueColumn}
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from typing import overload

import numpy as np

from envs.advice import ADVISORS
from rlsched.gangs import pick_gang
from rlsched.pool import Pool, fits_memory
from rlsched.schedulers.base import clock_ratios, expected_runtime
from rlsched.schedulers.upward_ranks import rerank, upward_rank
from rlsched.table import WorkloadTable
from rlsched.view import ClusterView, Placement, TaskState

ENCODER_VERSION = 11  # 11: the time scale of the jobs in the system; 10: what the belief
# rests on (spread, estimate, elapsed, kind seen); 9: sjf's advice

#: the first version whose time scale is that of the jobs in the system, in
#: each view; before it, the mean prediction over every task of the table at
#: the first view (in simulation, jobs not yet arrived included)
SCALE_OF_JOBS_IN_SYSTEM = 11


class Column(IntEnum):
    """A column of a feature block, numbered in order of definition from 0;
    its value in the class body is its documentation (meaning, unit and
    normalisation)."""

    doc: str

    def __new__(cls, doc: str) -> Column:
        column = int.__new__(cls, len(cls.__members__))
        column._value_ = int(column)
        column.doc = doc
        return column


class TaskColumn(Column):
    """Columns of ``tasks``: one row per task of the window."""

    IS_READY = "is ready (0/1)"
    IS_BLOCKED = "is blocked (0/1)"
    IS_RUNNING = "is running (0/1)"
    WORK = "predicted runtime on the reference device, the runtime model's belief (log-duration)"
    IS_MEMORY_BOUND = "is memory-bound (0/1; else compute-bound)"
    MEMORY = "GPU memory over the pool's largest device memory"
    CRITICAL_PATH = "remaining critical path from this task, at mean speeds (log-duration)"
    CHILDREN = "log1p(number of children)"
    JOB_REMAINING = "its job's predicted remaining work (log-duration)"
    JOB_AGE = "its job's time since arrival (log-duration)"
    JOB_PRIORITY = "log1p(its job's priority)"
    DEADLINE_SLACK = ("deadline slack: (deadline - now - critical path) / scale, signed log1p, "
                      "0 without a deadline")
    HAS_DEADLINE = "has a deadline (0/1)"
    TIME_LEFT = ("expected time left if running, at the device's current clock (log-duration); "
                 "0 if not running")
    UNFINISHED_PARENTS = "log1p(unfinished parents)"
    IS_CPU_ONLY = "is a CPU-only task (0/1)"
    GPUS = ("GPUs it needs at once over the pool's GPUs (0: CPU-only; above one GPU's share: "
            "a gang)")
    SPREAD = ("the runtime model's uncertainty: the spread of log runtime around its prediction "
              "(0: certain; 2: nothing known)")
    ESTIMATE = "the user's estimate, reference-seconds (log-duration); 0 without one"
    HAS_ESTIMATE = "the user gave an estimate (0/1)"
    ELAPSED = "time it has run so far if running (log-duration); 0 if not running"
    KIND_SEEN = ("tasks of its kind (history key) have finished, so history informs its "
                 "prediction (0/1)")
    SHARE_ADVICE = "share would place this task next (0/1; see :mod:`envs.advice`)"
    HEFT_ADVICE = "heft would place this task next (0/1)"
    CP_ADVICE = "cp would place this task next (0/1)"
    TETRIS_ADVICE = "tetris would place this task next (0/1)"
    SJF_ADVICE = "sjf would place this task next (0/1)"


class EdgeColumn(Column):
    """Columns of ``edges``: one row per parent -> child edge among window rows."""

    PARENT = "window row of the parent"
    CHILD = "window row of the child"


class DeviceColumn(Column):
    """Columns of ``devices``: one row per device of the pool."""

    UTILISATION = "utilisation (0..1)"
    MEMORY_USED = "memory used over its total"
    MEMORY_TOTAL = "memory total over the pool's largest"
    MEMORY_FREE = "memory free over the pool's largest"
    TEMPERATURE = "temperature / 100 C"
    POWER = "power over its limit"
    CLOCK = "SM clock over its maximum (below 1 when throttled; 0 when unhealthy)"
    TASKS = "log1p(tasks of ours running)"
    TIME_TO_FREE = "time until it frees, expected (log-duration)"
    HEALTHY = "healthy (0/1)"
    COMPUTE_SPEED = "log(nominal compute-bound speed)"
    MEMORY_SPEED = "log(nominal memory-bound speed)"
    SHARE_ADVICE = "share would place its next task here (0/1)"
    HEFT_ADVICE = "heft would place its next task here (0/1)"
    CP_ADVICE = "cp would place its next task here (0/1)"
    TETRIS_ADVICE = "tetris would place its next task here (0/1)"
    SJF_ADVICE = "sjf would place its next task here (0/1)"


class QueueColumn(Column):
    """Columns of ``queue``: global features of the decision point."""

    JOBS = "log1p(jobs in the system)"
    READY_BEYOND_SLOTS = "log1p(ready tasks beyond the ready slots)"
    BUSY_DEVICES = "busy devices over devices"
    SINCE_LAST_DECISION = "time since the last decision (log-duration; 0 at the first)"
    HEALTHY_DEVICES = "healthy devices over devices"
    TASKS_BEYOND_WINDOW = "log1p(unfinished tasks beyond the window)"
    SHARE_WAITS = "share would wait (0/1)"
    HEFT_WAITS = "heft would wait (0/1)"
    CP_WAITS = "cp would wait (0/1)"
    TETRIS_WAITS = "tetris would wait (0/1)"
    SJF_WAITS = "sjf would wait (0/1)"


def _per_advisor(columns: type[Column], suffix: str) -> tuple[Column, ...]:
    """The columns of ``columns`` named ``{ADVISOR}{suffix}``, in the order of
    :data:`envs.advice.ADVISORS`; refuses a block whose advice columns are
    not exactly one per advisor."""
    expected = [f"{a.upper()}{suffix}" for a in ADVISORS]
    found = [c.name for c in columns if c.name.endswith(suffix)]
    if found != expected:
        raise RuntimeError(f"{columns.__name__} has advice columns {found} but envs.advice.ADVISORS "
                           f"needs {expected}: give each advisor one column, in ADVISORS order, "
                           "and bump ENCODER_VERSION")
    return tuple(columns[name] for name in expected)


#: the advice columns of each block, indexed like :data:`envs.advice.ADVISORS`
TASK_ADVICE = _per_advisor(TaskColumn, "_ADVICE")
DEVICE_ADVICE = _per_advisor(DeviceColumn, "_ADVICE")
QUEUE_WAITS = _per_advisor(QueueColumn, "_WAITS")

#: the task columns each encoder version added: an observation of an earlier
#: version is this one without the columns added since, encoded on that
#: version's time scale (:data:`SCALE_OF_JOBS_IN_SYSTEM`; version 11 changed
#: only the scale)
ADDED_TASK_COLUMNS: dict[int, tuple[TaskColumn, ...]] = {
    10: (TaskColumn.SPREAD, TaskColumn.ESTIMATE, TaskColumn.HAS_ESTIMATE, TaskColumn.ELAPSED,
         TaskColumn.KIND_SEEN),
    11: (),
}
#: the versions a checkpoint may have been trained with (:func:`as_version`)
READABLE_VERSIONS = (min(ADDED_TASK_COLUMNS) - 1, *sorted(ADDED_TASK_COLUMNS))

TASK_FEATURES = len(TaskColumn)
DEVICE_FEATURES = len(DeviceColumn)
QUEUE_FEATURES = len(QueueColumn)

COLUMN_BLOCKS: dict[str, type[Column]] = {
    "tasks": TaskColumn, "edges": EdgeColumn, "devices": DeviceColumn, "queue": QueueColumn}


def column_table(columns: type[Column], indent: str = "") -> str:
    """An RST table of ``columns`` (index, name, documentation), every line
    but the first prefixed with ``indent``."""
    width = max(len(c.name) for c in columns)
    rule = f"==  {'=' * width}  {'=' * max(len(c.doc) for c in columns)}"
    rows = [f"{int(c):<2}  {c.name:<{width}}  {c.doc}".rstrip() for c in columns]
    return f"\n{indent}".join([rule, *rows, rule])


@overload
def document_columns(doc: str) -> str: ...
@overload
def document_columns(doc: None) -> None: ...


def document_columns(doc: str | None) -> str | None:
    """``doc`` with its column placeholders filled from the enums: a line
    holding only ``{TaskColumn}`` (any block's enum name) becomes its
    :func:`column_table`, indented like that line; ``{len(TaskColumn)}``
    becomes its number of columns. ``None`` (docstrings stripped by
    ``python -OO``) stays ``None``."""
    if doc is None:
        return None
    by_name = {c.__name__: c for c in COLUMN_BLOCKS.values()}
    doc = re.sub(r"^( *)\{(\w+)\}$", lambda m: m[1] + column_table(by_name[m[2]], m[1]), doc,
                 flags=re.MULTILINE)
    return re.sub(r"\{len\((\w+)\)\}", lambda m: str(len(by_name[m[1]])), doc)


__doc__ = document_columns(__doc__)

_READY, _RUNNING, _BLOCKED, _DONE = (int(TaskState.READY), int(TaskState.RUNNING),
                                     int(TaskState.BLOCKED), int(TaskState.DONE))
#: which states are running or blocked
_RUNNING_OR_BLOCKED = np.array([s in (_RUNNING, _BLOCKED) for s in range(len(TaskState))])
#: the device columns _encode_devices computes per device, in its order
_DEVICE_ARITHMETIC = np.array([
    DeviceColumn.UTILISATION, DeviceColumn.MEMORY_USED, DeviceColumn.MEMORY_TOTAL,
    DeviceColumn.MEMORY_FREE, DeviceColumn.TEMPERATURE, DeviceColumn.POWER, DeviceColumn.CLOCK,
    DeviceColumn.HEALTHY])
_SPEED_COLUMNS = np.array([DeviceColumn.COMPUTE_SPEED, DeviceColumn.MEMORY_SPEED])
#: the task columns that are log-durations, in the order _encode_tasks stacks them
_DURATION_COLUMNS = np.array([TaskColumn.WORK, TaskColumn.CRITICAL_PATH,
                              TaskColumn.JOB_REMAINING, TaskColumn.JOB_AGE])
#: the is-ready, is-blocked and is-running columns of a task in each state
_STATE_COLUMNS = np.array([TaskColumn.IS_READY, TaskColumn.IS_BLOCKED, TaskColumn.IS_RUNNING])
_STATE_ROWS = np.array([[s == _READY, s == _BLOCKED, s == _RUNNING] for s in range(len(TaskState))],
                       dtype=np.float32)


@dataclass(frozen=True)
class Maxima:
    """Fixed sizes of the observation and action spaces.

    :param tasks: rows of the task window
    :param ready: ready slots the action space can place (<= tasks)
    :param devices: device rows (a pool may have fewer)
    :param edges: edges among window rows
    """

    tasks: int = 64
    ready: int = 16
    devices: int = 8
    edges: int = 256

    def __post_init__(self) -> None:
        if not 1 <= self.ready <= self.tasks:
            raise ValueError(f"ready slots ({self.ready}) must be between 1 and tasks "
                             f"({self.tasks})")
        if self.devices < 1 or self.edges < 1:
            raise ValueError("devices and edges must be at least 1")

    @property
    def n_actions(self) -> int:
        return self.ready * self.devices + 1


class EpisodeStatics:
    """What the encoder derives once per workload table and pool, and once
    per set of beliefs (:meth:`believe`: the view's predicted runtimes).

    :param predicted: the first view's predictions
    :param version: the encoder version to encode as (a checkpoint's). From
        :data:`SCALE_OF_JOBS_IN_SYSTEM` on, the time scale is the mean
        prediction over the GPU tasks of the jobs in the system, read off
        each view (:meth:`rescale`): the live daemon's table holds only those
        jobs, the simulator's every job of the episode, so a scale over the
        table differed between the two worlds, and in simulation it read the
        predictions of jobs not yet arrived. Before it, the scale is that of
        ``predicted`` over the whole table, fixed (what those policies trained on).
    """

    def __init__(self, table: WorkloadTable, pool: Pool, predicted: Sequence[float],
                 version: int = ENCODER_VERSION) -> None:
        self.table, self.pool = table, pool
        a = table.arrays
        gpu_work = np.asarray(predicted, dtype=np.float64)[a["gpu"]]
        self.scale = _mean_or_one(gpu_work)
        self.rescales = version >= SCALE_OF_JOBS_IN_SYSTEM
        self._scale_key: tuple[Sequence[float], int, int, int] | None = None
        self._inv_mean_speed = np.array([
            np.mean([1.0 / d.model.compute_speed for d in pool.devices]),
            np.mean([1.0 / d.model.memory_speed for d in pool.devices])])
        self._beliefs: tuple[Sequence[float], int, int | None] | None = None
        #: which tasks were done when ``work`` was last brought up to date
        self._done: np.ndarray | None = None
        self.kind = a["kind"]
        self.memory_rel = a["memory"] / pool.max_memory
        self.gpu = a["gpu"]
        self.job_of = a["job_of"]
        self.log_children = np.log1p([len(c) for c in table.children])
        jobs = table.jobs
        self.job_arrival = np.array([j.arrival for j in jobs])
        self.job_priority_log = np.log1p(np.array([j.priority for j in jobs]))
        self.job_deadline = np.array([j.arrival + j.deadline if j.deadline is not None
                                      else np.nan for j in jobs])
        self.any_deadline = any(j.deadline is not None for j in jobs)
        src = [p for c, ps in enumerate(table.parents) for p in ps]
        dst = [c for c, ps in enumerate(table.parents) for _ in ps]
        self.edge_src = np.array(src, dtype=np.int64)
        self.edge_dst = np.array(dst, dtype=np.int64)
        models = [d.model for d in pool.devices]
        self.log_speed = np.log([[m.compute_speed, m.memory_speed] for m in models])
        self.inv_speed_by_device = 1.0 / np.array([[m.compute_speed, m.memory_speed]
                                                   for m in models])
        self.max_memory = pool.max_memory
        T = TaskColumn
        #: the task columns that never change, gathered in one indexing per encoding
        estimate = a["estimate"]
        has_estimate = np.isfinite(estimate)
        self.static_columns = np.array([T.IS_MEMORY_BOUND, T.MEMORY, T.CHILDREN, T.IS_CPU_ONLY,
                                        T.GPUS, T.HAS_ESTIMATE])
        self.static_rows = np.stack([self.kind, self.memory_rel, self.log_children, ~self.gpu,
                                     np.asarray(table.gpus) / len(pool), has_estimate],
                                    axis=1).astype(np.float32)
        #: the estimate, 0 where there is none (its column is on the scale, which moves)
        self.estimate_or_zero = np.where(has_estimate, estimate, 0.0)
        #: as Python numbers, for the per-running-task loop of the time left
        self.kind_list = self.kind.tolist()
        self.job_of_list = self.job_of.tolist()
        self.inv_speed_rows = self.inv_speed_by_device.tolist()
        self._known_edges: tuple[int, np.ndarray, np.ndarray] | None = None
        self.rank_list: list[float] = []
        self.rank = self._mean_cost = np.zeros(0)
        self.believe(predicted)

    def rescale(self, view: ClusterView, state: np.ndarray, n_done: int) -> None:
        """Set the time scale from ``view`` (where this version's scale
        follows the jobs in the system): the mean prediction over the GPU
        tasks of the jobs that have arrived and have a task not done
        (``state``, the known tasks', ``n_done`` of them done). A function of
        the view alone, which the daemon builds from exactly those jobs;
        worked out again only where the predictions, the arrivals or the
        tasks done have changed (a job leaves only as its last task ends)."""
        if not self.rescales:
            return
        key = (view.predicted, view.knowledge, view.n_arrived, n_done)
        hit = self._scale_key
        if hit is not None and hit[0] is key[0] and hit[1:] == key[1:]:
            return
        self._scale_key = key
        job_of = self.job_of[:state.size]
        in_system = np.bincount(job_of[state != _DONE], minlength=view.n_arrived) > 0
        tasks = in_system[job_of] & self.gpu[:state.size]
        self.scale = _mean_or_one(self.work[:state.size][tasks])

    def known_edges(self, n_known: int) -> tuple[np.ndarray, np.ndarray]:
        """The parent and child of every edge among the first ``n_known``
        tasks (edges never cross jobs, so a known task's parents are known)."""
        hit = self._known_edges
        if hit is None or hit[0] != n_known:
            known = self.edge_dst < n_known
            hit = self._known_edges = (n_known, self.edge_src[known], self.edge_dst[known])
        return hit[1], hit[2]

    def believe(self, predicted: Sequence[float], knowledge: int = 0,
                open_knowledge: int | None = None,
                task_state: Sequence[int] | None = None) -> None:
        """Take the view's predicted runtimes (and its :attr:`ClusterView.knowledge`
        and ``open_knowledge``, which change with them): the work column and
        the upward ranks (at the pool's mean speed) follow them. The ranks
        are read only for unfinished tasks (the window's), which read only
        unfinished tasks, so a task's finishing alone leaves them. Given the
        view's ``task_state``, a change of the same predictions re-ranks only
        the unfinished tasks whose cost moved and their ancestors
        (:func:`rerank`): the same floats for every unfinished task as a
        full pass, at the cost of what changed; where only tasks finished
        (``open_knowledge`` held), only theirs are read into the work column."""
        beliefs = self._beliefs
        same = same_open = False  # the same predictions list; and its open tasks' beliefs
        if beliefs is not None and beliefs[0] is predicted:
            if beliefs[1] == knowledge:
                return
            same = True
            same_open = open_knowledge is not None and beliefs[2] == open_knowledge
        self._beliefs = (predicted, knowledge, open_knowledge)
        done = None if task_state is None else \
            np.frombuffer(task_state, dtype=np.uint8) == _DONE
        if same_open and done is not None and self._done is not None:
            # the open tasks' beliefs held: only the tasks finished since
            # moved (to what they took), so only those are read again
            ended = np.flatnonzero(done & ~self._done).tolist()
            self.work[ended] = [predicted[t] for t in ended]
            self._done = done
            return
        self.work = np.asarray(predicted, dtype=np.float64)
        self._done = done
        if same_open:
            return
        mean_cost = np.where(self.gpu, self.work * self._inv_mean_speed[self.kind], self.work)
        if same and task_state is not None:
            moved = np.flatnonzero(mean_cost != self._mean_cost).tolist()
            table = self.table
            ranked = rerank(self.rank_list, mean_cost.tolist(), table.children, table.parents,
                            [t for t in moved if task_state[t] != _DONE], task_state)
            if ranked:
                self.rank[ranked] = [self.rank_list[t] for t in ranked]
        else:
            self.rank_list = upward_rank(mean_cost.tolist(), self.table.children)
            self.rank = np.array(self.rank_list)
        self._mean_cost = mean_cost


def _mean_or_one(work: np.ndarray) -> float:
    """The scale of ``work``: its mean, or 1 where it has none (or none above 0)."""
    mean = float(work.mean()) if work.size else 0.0
    return mean if mean > 0 else 1.0


def _logd(x: np.ndarray | float, scale: float) -> np.ndarray | float:
    return np.log1p(np.maximum(x, 0.0) / scale)


def empty_observation(m: Maxima) -> dict[str, np.ndarray]:
    return {
        "tasks": np.zeros((m.tasks, TASK_FEATURES), np.float32),
        "task_mask": np.zeros(m.tasks, np.float32),
        "task_job": np.zeros(m.tasks, np.float32),
        "edges": np.zeros((m.edges, len(EdgeColumn)), np.float32),
        "edge_mask": np.zeros(m.edges, np.float32),
        "devices": np.zeros((m.devices, DEVICE_FEATURES), np.float32),
        "device_mask": np.zeros(m.devices, np.float32),
        "queue": np.zeros(QUEUE_FEATURES, np.float32),
    }


@dataclass
class Encoding:
    """An observation and what is needed to read an action back."""

    obs: dict[str, np.ndarray]
    window: np.ndarray  # global task index of each window row
    n_slots: int  # window rows 0..n_slots-1 are ready slots


def _quotient(a: float, b: float) -> float:
    """``a / b`` as numpy divides floats: a zero divisor gives inf or nan, not an error."""
    if b:
        return a / b
    if a == 0 or a != a:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def encode(view: ClusterView, statics: EpisodeStatics, m: Maxima,
           last_decision_time: float | None = None,
           advice: list[Placement | None] | None = None) -> Encoding:
    """Encode ``view`` into the observation of the module docstring;
    ``advice`` is :meth:`envs.advice.Advisors.advise` of the view (None: no
    advice, its columns stay 0)."""
    statics.believe(view.predicted, view.knowledge, view.open_knowledge, view.task_state)
    if len(view.devices) > m.devices:
        raise ValueError(f"the pool has {len(view.devices)} devices but the encoder's maximum is "
                         f"{m.devices}; build it with larger Maxima(devices=...)")
    n_known = view.table.job_start[view.n_arrived]
    state = np.frombuffer(view.task_state, dtype=np.uint8)[:n_known]
    n_done = int(np.count_nonzero(state == _DONE))
    statics.rescale(view, state, n_done)
    window, n_slots, pending = _task_window(view, statics, m, state, advice)
    clocks = clock_ratios(view)
    running, busy_for = _running_times(view, statics, window, clocks)

    obs = empty_observation(m)
    _encode_tasks(obs, view, statics, window, state, pending, running)
    if not _ready_only(view, m):  # (a ready task's parents are done: ready rows share no edge)
        _encode_edges(obs, view, statics, window)
    _encode_devices(obs, view, statics, clocks, busy_for)
    _encode_queue(obs["queue"], view, statics, m, state.size - n_done, window.size,
                  last_decision_time)
    if advice is not None:
        _encode_advice(obs, window[:n_slots], advice)
    return Encoding(obs, window, n_slots)


def as_version(obs: dict[str, np.ndarray], version: int) -> dict[str, np.ndarray]:
    """``obs`` as encoder ``version`` made it: the task columns added after
    ``version`` taken out. A policy trained on an earlier version keeps
    working, seeing exactly what it trained on (the pinned observation
    hashes check that the rest is unchanged)."""
    kept = _kept_task_columns(version)
    if kept is None:
        return obs
    return {**obs, "tasks": obs["tasks"].take(kept, axis=1)}


@cache
def _kept_task_columns(version: int) -> np.ndarray | None:
    """The task columns encoder ``version`` had (None: all of them)."""
    if version not in READABLE_VERSIONS:
        raise ValueError(f"encoder version {version} cannot be read; this encoder reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    added = {c for v, columns in ADDED_TASK_COLUMNS.items() if v > version for c in columns}
    return np.array([c for c in TaskColumn if c not in added]) if added else None


def _unfinished_parents(st: EpisodeStatics, state: np.ndarray) -> np.ndarray:
    """Unfinished parents of every known task (edges never cross jobs, so a
    known task's parents are known)."""
    n_known = state.size
    src, dst = st.known_edges(n_known)
    return np.bincount(dst[state[src] != _DONE], minlength=n_known)


#: sort the whole ready queue even where more tasks are ready than the
#: window holds (the reference the partial selection is tested against)
_SORT_WHOLE_QUEUE = False


def _ready_only(view: ClusterView, m: Maxima) -> bool:
    """Whether the window is ready tasks alone, taken from the top of the
    queue: more are ready than it has rows."""
    return len(view.ready) > m.tasks and not _SORT_WHOLE_QUEUE


def _task_window(view: ClusterView, st: EpisodeStatics, m: Maxima, state: np.ndarray,
                 advice: list[Placement | None] | None) -> tuple[np.ndarray, int, np.ndarray]:
    """The window rows' global task indices, in the order of the module
    docstring, how many of them are ready slots, and each row's unfinished
    parents. Where more tasks are ready than the window has rows, the
    window is ready tasks alone: the first ones by the sort and the advised
    ones (which :func:`_advised_in_slots` brings into the slots), picked
    without sorting the rest of the queue, and the running and blocked
    tasks are not ordered at all. So a decision's cost does not grow with
    the queue behind the window."""
    # least job work left first, then longest critical path (a stable sort, as
    # np.lexsort((-rank, job_left)) is), on Python numbers: the queue is short
    remaining, job_of, rank = view.job_remaining, st.job_of_list, st.rank_list

    def key(t: int) -> tuple[float, float]:
        return remaining[job_of[t]], -rank[t]

    if _ready_only(view, m):
        top = heapq.nsmallest(m.tasks, view.ready, key=key)  # stable, as sorted(...)[:n]
        beyond = _advised_beyond(view, top, advice, key)
        ready = np.array(top + beyond, dtype=np.int64)
        if advice is not None:
            ready = _advised_in_slots(ready, advice, m.ready)
        window = ready[:m.tasks]
        return window, m.ready, np.zeros(window.size, dtype=np.int64)  # ready: parents done
    ready = np.array(sorted(view.ready, key=key), dtype=np.int64)
    if advice is not None and ready.size > m.ready:
        ready = _advised_in_slots(ready, advice, m.ready)
    every_pending = _unfinished_parents(st, state)
    running_or_blocked = np.flatnonzero(_RUNNING_OR_BLOCKED[state])
    blocked = state[running_or_blocked] != _RUNNING  # running first (False sorts first)
    order = np.lexsort((-st.rank[running_or_blocked], every_pending[running_or_blocked], blocked))
    window = np.concatenate([ready, running_or_blocked[order]])[:m.tasks]
    return window, min(ready.size, m.ready), every_pending[window]


def _advised_beyond(view: ClusterView, top: list[int], advice: list[Placement | None] | None,
                    key: Callable[[int], tuple[float, float]]) -> list[int]:
    """The advised ready tasks that are not among ``top`` (the first ready
    tasks by ``key``), in the order the full sort gives them: by ``key``,
    ties in ready order. (Advice is of ready tasks; one that is not is left
    out, as the full sort leaves it.)"""
    if advice is None:
        return []
    chosen, ready = set(top), view.ready
    beyond = {p.task for p in advice
              if p is not None and p.task not in chosen and p.task in ready}
    if len(beyond) < 2:
        return list(beyond)
    position = {t: i for i, t in enumerate(view.ready) if t in beyond}
    return sorted(beyond, key=lambda t: (key(t), position[t]))


def _running_times(view: ClusterView, st: EpisodeStatics, window: np.ndarray,
                   clocks: list[float]) -> tuple[dict[int, tuple[float, float]], np.ndarray]:
    """Expected seconds left, and seconds run so far, of each running window
    row (by row), and until each device frees (its longest expected time left)."""
    busy_for = np.zeros(len(view.devices))
    times: dict[int, tuple[float, float]] = {}
    if not view.running:
        return times, busy_for
    # the same float64 arithmetic as on the arrays, on Python floats
    row_of = {t: i for i, t in enumerate(window.tolist())}
    work, inv_speed, kind = view.predicted, st.inv_speed_rows, st.kind_list
    busy = [0.0] * len(busy_for)
    now = view.time
    for r in view.running:
        t, d = r.task, r.device
        if d >= 0:
            runtime = work[t] * inv_speed[d][kind[t]]
            left = max(r.start + runtime / clocks[d] - now, 0.0)
            busy[d] = max(busy[d], left)
        else:
            left = max(r.start + work[t] - now, 0.0)
        i = row_of.get(t)
        if i is not None:
            times[i] = left, max(now - r.start, 0.0)
    busy_for[:] = busy
    return times, busy_for


def _encode_tasks(obs: dict[str, np.ndarray], view: ClusterView, st: EpisodeStatics,
                  window: np.ndarray, state: np.ndarray, pending: np.ndarray,
                  running: dict[int, tuple[float, float]]) -> None:
    """``tasks`` (but its advice columns), ``task_mask`` and ``task_job``;
    ``pending`` is each row's unfinished parents, ``running``
    :func:`_running_times`'s (time left, time run) by row."""
    T, f, n = TaskColumn, obs["tasks"], window.size
    scale, now = st.scale, view.time
    f[:n, _STATE_COLUMNS] = _STATE_ROWS[state[window]]
    f[:n, st.static_columns] = st.static_rows[window]
    jobs = st.job_of[window]
    # the four log-durations in one pass: each element as _logd computes it alone
    rank = st.rank[window]
    durations = np.empty((4, n))
    np.take(st.work, window, out=durations[0])
    durations[1] = rank
    np.take(np.asarray(view.job_remaining), jobs, out=durations[2])
    np.subtract(now, st.job_arrival[jobs], out=durations[3])
    f[:n, _DURATION_COLUMNS] = _logd(durations, scale).T
    f[:n, T.ESTIMATE] = _logd(st.estimate_or_zero[window], scale)
    f[:n, T.JOB_PRIORITY] = st.job_priority_log[jobs]
    if st.any_deadline:
        deadline = st.job_deadline[jobs]
        has_deadline = ~np.isnan(deadline)
        slack = np.where(has_deadline, (deadline - now - rank) / scale, 0.0)
        f[:n, T.DEADLINE_SLACK] = np.sign(slack) * np.log1p(np.abs(slack))
        f[:n, T.HAS_DEADLINE] = has_deadline
    # (else both columns stay 0: no slack, no deadline)
    for i, (left, elapsed) in running.items():
        f[i, T.TIME_LEFT] = math.log1p(left / scale)
        f[i, T.ELAPSED] = math.log1p(elapsed / scale)
    rows = window.tolist()
    spread, keys, known = view.spread, view.table.history_key, view.known_kinds
    f[:n, T.SPREAD] = [spread[t] for t in rows]  # (two lists convert twice as fast as pairs)
    f[:n, T.KIND_SEEN] = [keys[t] in known for t in rows]
    f[:n, T.UNFINISHED_PARENTS] = np.log1p(pending)
    obs["task_mask"][:n] = 1.0
    slot: dict[int, int] = {}  # job slots in order of first appearance
    obs["task_job"][:n] = [slot.setdefault(j, len(slot)) for j in jobs.tolist()]


def _encode_edges(obs: dict[str, np.ndarray], view: ClusterView, st: EpisodeStatics,
                  window: np.ndarray) -> None:
    """``edges`` and ``edge_mask``: the first edges whose ends are both in
    the window, as many as fit."""
    n = window.size
    if not n or not st.edge_src.size:
        return
    # window rows are tasks of arrived jobs, so only the edges among those,
    # in table order, can join two of them
    n_known = view.table.job_start[view.n_arrived]
    src, dst = st.known_edges(n_known)
    pos = np.full(n_known, -1, dtype=np.int64)
    pos[window] = np.arange(n)
    parent, child = pos[src], pos[dst]
    keep = np.flatnonzero((parent >= 0) & (child >= 0))[:obs["edges"].shape[0]]
    k = keep.size
    obs["edges"][:k, EdgeColumn.PARENT] = parent[keep]
    obs["edges"][:k, EdgeColumn.CHILD] = child[keep]
    obs["edge_mask"][:k] = 1.0


def _encode_devices(obs: dict[str, np.ndarray], view: ClusterView, st: EpisodeStatics,
                    clocks: list[float], busy_for: np.ndarray) -> None:
    """``devices`` (but its advice columns) and ``device_mask``. The columns
    that are arithmetic on telemetry are computed per device on Python
    floats (the same IEEE operations numpy would do on float64 columns) and
    written in one assignment."""
    D, d, g = DeviceColumn, obs["devices"], busy_for.size
    max_memory = st.max_memory
    rows = []
    for x, clock in zip(view.devices, clocks):
        used, total, healthy = x.memory_used, x.memory_total, 1.0 if x.healthy else 0.0
        rows.append((x.utilization, _quotient(used, total), total / max_memory,
                     (total - used) / max_memory, x.temperature_c / 100.0,
                     _quotient(x.power_w, x.power_limit_w), clock * healthy, healthy))
    d[:g, _DEVICE_ARITHMETIC] = rows
    d[:g, D.TASKS] = np.log1p([float(x.n_tasks) for x in view.devices])
    d[:g, D.TIME_TO_FREE] = _logd(busy_for, st.scale)
    d[:g, _SPEED_COLUMNS] = st.log_speed
    obs["device_mask"][:g] = 1.0


def _encode_queue(q: np.ndarray, view: ClusterView, st: EpisodeStatics, m: Maxima,
                  unfinished: int, n_window: int, last_decision_time: float | None) -> None:
    """``queue`` but its advice columns; ``unfinished``: the known tasks not done."""
    Q, g = QueueColumn, len(view.devices)
    finished = sum(1 for left in view.job_remaining[:view.n_arrived] if left <= 0)
    q[Q.JOBS] = math.log1p(view.n_arrived - finished)
    q[Q.READY_BEYOND_SLOTS] = math.log1p(max(len(view.ready) - m.ready, 0))
    q[Q.BUSY_DEVICES] = sum(1 for x in view.devices if x.n_tasks) / g
    q[Q.SINCE_LAST_DECISION] = (_logd(view.time - last_decision_time, st.scale)
                                if last_decision_time is not None else 0.0)
    q[Q.HEALTHY_DEVICES] = sum(1 for x in view.devices if x.healthy) / g
    q[Q.TASKS_BEYOND_WINDOW] = math.log1p(max(unfinished - n_window, 0))


def _encode_advice(obs: dict[str, np.ndarray], slots: np.ndarray,
                   advice: list[Placement | None]) -> None:
    """The advice columns: advisor ``k``'s task (if in a ready slot) and
    device, or that it would wait."""
    row_of_task = {int(t): i for i, t in enumerate(slots)}
    for k, p in enumerate(advice):
        if p is None:
            obs["queue"][QUEUE_WAITS[k]] = 1.0
            continue
        i = row_of_task.get(p.task)
        if i is not None:
            obs["tasks"][i, TASK_ADVICE[k]] = 1.0
        obs["devices"][p.device, DEVICE_ADVICE[k]] = 1.0


def _advised_in_slots(ready: np.ndarray, advice: list[Placement | None], slots: int
                      ) -> np.ndarray:
    """``ready`` (in window order) with every advised task among the first
    ``slots``: the advised ones take the places of the last unadvised ones,
    and the slots keep window order. Without this, a heuristic that lets a
    short task deep in the queue share a busy GPU (share does) advises a
    placement the action space cannot express, and a policy cannot follow it."""
    advised = {p.task for p in advice if p is not None}
    rows = ready.tolist()  # (Python ints: read once, not a numpy scalar per row)
    late = [i for i in range(slots, len(rows)) if rows[i] in advised]
    if not late:
        return ready
    unadvised = [i for i in range(slots) if rows[i] not in advised]
    out = unadvised[len(unadvised) - len(late):]
    taken = sorted(set(range(slots)) - set(out) | set(late))
    chosen = set(taken)
    left = [i for i in range(len(rows)) if i not in chosen]
    return ready[taken + left]


def action_mask(view: ClusterView, enc: Encoding, m: Maxima) -> np.ndarray:
    """Valid actions: ready slot ``i`` on device ``j`` where the device is
    healthy, has the memory free now and the task may use it (its
    ``gpus_allowed`` / ``gpus_avoid``) (index ``i * m.devices + j``), and
    wait (the last index) while something runs. For a gang (a task of N
    GPUs), ``j`` is its first device, valid where :func:`gang_of` finds it
    N - 1 mates."""
    mask = np.zeros(m.n_actions, dtype=bool)
    memory = view.table.memory
    ruled = view.constrained
    for j, dev in enumerate(view.devices):
        if not dev.healthy:
            continue
        free = dev.memory_free
        for i in range(enc.n_slots):
            task = int(enc.window[i])
            if fits_memory(memory[task], free) and (not ruled or view.may_use(task, j)):
                mask[i * m.devices + j] = True
    if view.table.has_gangs:
        for i in range(enc.n_slots):
            task = int(enc.window[i])
            if view.gpus(task) > 1:
                for j in range(len(view.devices)):
                    if mask[i * m.devices + j]:
                        mask[i * m.devices + j] = gang_of(view, task, j) is not None
    mask[-1] = bool(view.running)
    return mask


def gang_of(view: ClusterView, task: int, first: int) -> tuple[int, ...] | None:
    """The devices an action starting gang ``task`` on ``first`` gives it:
    ``first`` and, among the devices that take it now, the mates that
    :func:`rlsched.gangs.pick_gang` picks (its host; idle devices before busy
    ones, then the fastest for it, ties to the lower index); None if there
    are not enough. Idle first: a gang runs at its slowest member's pace, and
    a member that shares its device slows the whole gang and the task it
    shares with, as the heuristics' gangs (which take idle devices) never do."""
    takers = [d.index for d in view.devices if view.fits(task, d.index)]
    devices = view.devices
    return pick_gang(view.pool, view.gpus(task), takers,
                     lambda d: (devices[d].n_tasks > 0, expected_runtime(view, task, d)),
                     first=first)


def placement_of(view: ClusterView, enc: Encoding, m: Maxima, action: int) -> list[Placement]:
    """The placements an action makes (none: wait): a ready slot's task on a
    device, a gang on that device and the mates :func:`gang_of` gives it."""
    if action == m.n_actions - 1:
        return []
    slot, device = divmod(action, m.devices)
    task = int(enc.window[slot])
    if view.gpus(task) > 1:
        gang = gang_of(view, task, device)
        if gang is None:
            raise ValueError(f"action {action} starts a gang of {view.gpus(task)} GPUs on device "
                             f"{device}, which finds no mates for it")
        return [Placement(task, gang[0], gang[1:])]
    return [Placement(task, device)]
