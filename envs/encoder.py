"""The observation encoder: a plain function of the cluster view.

The Gymnasium environment and the deployed policy both call :func:`encode`,
so a policy sees in production exactly what it saw in training. It reads
only the view (and statics derived from the view's table and pool), never
the simulator.

Layout (``M`` = :class:`Maxima`; every float is float32):

``tasks`` (M.tasks x TASK_FEATURES)
    A window of the unfinished tasks of the jobs that have arrived: the ready
    GPU tasks first (those of the job with the least remaining work first, as
    shortest-remaining-time policies want them; within a job, longest
    remaining critical path first, as makespan policies want), then running
    tasks, then blocked tasks with the fewest unfinished parents first (the
    nearest descendants), each group by remaining critical path. Row ``i <
    M.ready`` that is ready is *ready slot* ``i`` of the action space; a task
    an advisor would place is always in a slot, so every advice can be
    followed.
    Durations are ``log1p(seconds / scale)``, ``scale`` being the episode's
    mean GPU-task work on the reference device. Columns:

    ==  ==========================================================
    0   is ready (0/1)
    1   is blocked (0/1)
    2   is running (0/1)
    3   work on the reference device (log-duration)
    4   is memory-bound (0/1; else compute-bound)
    5   GPU memory over the pool's largest device memory
    6   remaining critical path from this task, at mean speeds (log-duration)
    7   log1p(number of children)
    8   its job's remaining work (log-duration)
    9   its job's time since arrival (log-duration)
    10  log1p(its job's priority)
    11  deadline slack: (deadline - now - critical path) / scale, signed
        log1p, 0 without a deadline
    12  has a deadline (0/1)
    13  expected time left if running, at the device's current clock
        (log-duration)
    14  log1p(unfinished parents)
    15  is a CPU-only task (0/1)
    16  share would place this task next (0/1; see :mod:`envs.advice`)
    17  heft would place this task next (0/1)
    18  cp would place this task next (0/1)
    19  tetris would place this task next (0/1)
    ==  ==========================================================

``task_mask`` (M.tasks): 1 for a filled row.

``task_job`` (M.tasks): the row's job as a window-local slot (0, 1, ... in
    order of first appearance), so a policy can sum over each job's tasks.

``edges`` (M.edges x 2) and ``edge_mask`` (M.edges): parent -> child pairs
    of window rows, as floats. An edge list rather than an adjacency matrix:
    it stays small in rollout buffers (2 x 256 numbers against 64 x 64) and
    feeds scatter-add message passing directly.

``devices`` (M.devices x DEVICE_FEATURES), ``device_mask`` (M.devices):

    ==  ==========================================================
    0   utilisation (0..1)
    1   memory used over its total
    2   memory total over the pool's largest
    3   memory free over the pool's largest
    4   temperature / 100 C
    5   power over its limit
    6   SM clock over its maximum (below 1 when throttled)
    7   log1p(tasks of ours running)
    8   time until it frees, expected (log-duration)
    9   healthy (0/1)
    10  log(nominal compute-bound speed)
    11  log(nominal memory-bound speed)
    12  share would place its next task here (0/1)
    13  heft would place its next task here (0/1)
    14  cp would place its next task here (0/1)
    15  tetris would place its next task here (0/1)
    ==  ==========================================================

``queue`` (QUEUE_FEATURES): log1p(jobs in the system), log1p(ready tasks
    beyond the ready slots), busy devices over devices, time since the last
    decision (log-duration), healthy devices over devices, log1p(unfinished
    tasks beyond the window), then for share, heft, cp and tetris in turn:
    it would wait (0/1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.advice import ADVISORS
from rlsched.pool import Pool
from rlsched.schedulers.simple import upward_rank
from rlsched.table import WorkloadTable
from rlsched.view import ClusterView, Placement, TaskState

ENCODER_VERSION = 7  # 7: share waits for a clearly faster busy GPU, so its advice changed
TASK_FEATURES = 16 + len(ADVISORS)
DEVICE_FEATURES = 12 + len(ADVISORS)
QUEUE_FEATURES = 6 + len(ADVISORS)

_READY, _RUNNING, _BLOCKED, _DONE = (int(TaskState.READY), int(TaskState.RUNNING),
                                     int(TaskState.BLOCKED), int(TaskState.DONE))


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
    """What the encoder derives once per workload table and pool."""

    def __init__(self, table: WorkloadTable, pool: Pool) -> None:
        self.table, self.pool = table, pool
        a = table.arrays
        gpu_work = a["work"][a["gpu"]]
        self.scale = float(gpu_work.mean()) if gpu_work.size and gpu_work.mean() > 0 else 1.0
        inv_speed = np.array([np.mean([1.0 / d.model.compute_speed for d in pool.devices]),
                              np.mean([1.0 / d.model.memory_speed for d in pool.devices])])
        mean_cost = np.where(a["gpu"], a["work"] * inv_speed[a["kind"]], a["work"])
        self.rank = np.array(upward_rank(mean_cost.tolist(), table.children))
        self.work = a["work"]
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
        src = [p for c, ps in enumerate(table.parents) for p in ps]
        dst = [c for c, ps in enumerate(table.parents) for _ in ps]
        self.edge_src = np.array(src, dtype=np.int64)
        self.edge_dst = np.array(dst, dtype=np.int64)
        models = [d.model for d in pool.devices]
        self.log_speed = np.log([[m.compute_speed, m.memory_speed] for m in models])
        self.inv_speed_by_device = 1.0 / np.array([[m.compute_speed, m.memory_speed]
                                                   for m in models])
        self.max_memory = pool.max_memory


def _logd(x: np.ndarray | float, scale: float) -> np.ndarray | float:
    return np.log1p(np.maximum(x, 0.0) / scale)


def empty_observation(m: Maxima) -> dict[str, np.ndarray]:
    return {
        "tasks": np.zeros((m.tasks, TASK_FEATURES), np.float32),
        "task_mask": np.zeros(m.tasks, np.float32),
        "task_job": np.zeros(m.tasks, np.float32),
        "edges": np.zeros((m.edges, 2), np.float32),
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


def encode(view: ClusterView, statics: EpisodeStatics, m: Maxima,
           last_decision_time: float | None = None,
           advice: list[Placement | None] | None = None) -> Encoding:
    """Encode ``view`` into the observation of the module docstring;
    ``advice`` is :meth:`envs.advice.Advisors.advise` of the view (None: no
    advice, its columns stay 0)."""
    if len(view.devices) > m.devices:
        raise ValueError(f"the pool has {len(view.devices)} devices but the encoder's maximum is "
                         f"{m.devices}; build it with larger Maxima(devices=...)")
    st = statics
    scale, now = st.scale, view.time
    n_known = view.table.job_start[view.n_arrived]
    state = np.frombuffer(view.task_state, dtype=np.uint8)[:n_known]

    # unfinished parents of every known task (edges never cross jobs)
    known_edges = st.edge_dst < n_known
    esrc, edst = st.edge_src[known_edges], st.edge_dst[known_edges]
    pending = np.bincount(edst[state[esrc] != _DONE], minlength=n_known)

    ready = np.fromiter(view.ready, dtype=np.int64, count=len(view.ready))
    job_left = np.asarray(view.job_remaining)[st.job_of[ready]]
    ready = ready[np.lexsort((-st.rank[ready], job_left))]
    if advice is not None and ready.size > m.ready:
        ready = _advised_in_slots(ready, advice, m.ready)
    running_or_blocked = np.flatnonzero((state == _RUNNING) | (state == _BLOCKED))
    group = np.where(state[running_or_blocked] == _RUNNING, 0, 1)
    order = np.lexsort((-st.rank[running_or_blocked], pending[running_or_blocked], group))
    rest = running_or_blocked[order]
    window = np.concatenate([ready, rest])[:m.tasks]
    n = window.size
    n_slots = min(ready.size, m.ready)

    obs = empty_observation(m)
    f = obs["tasks"]
    ws = state[window]
    f[:n, 0] = ws == _READY
    f[:n, 1] = ws == _BLOCKED
    f[:n, 2] = ws == _RUNNING
    f[:n, 3] = _logd(st.work[window], scale)
    f[:n, 4] = st.kind[window]
    f[:n, 5] = st.memory_rel[window]
    f[:n, 6] = _logd(st.rank[window], scale)
    f[:n, 7] = st.log_children[window]
    jobs = st.job_of[window]
    job_remaining = np.asarray(view.job_remaining)
    f[:n, 8] = _logd(job_remaining[jobs], scale)
    f[:n, 9] = _logd(now - st.job_arrival[jobs], scale)
    f[:n, 10] = st.job_priority_log[jobs]
    deadline = st.job_deadline[jobs]
    has_deadline = ~np.isnan(deadline)
    slack = np.where(has_deadline, (deadline - now - st.rank[window]) / scale, 0.0)
    f[:n, 11] = np.sign(slack) * np.log1p(np.abs(slack))
    f[:n, 12] = has_deadline
    f[:n, 14] = np.log1p(pending[window])
    f[:n, 15] = ~st.gpu[window]
    obs["task_mask"][:n] = 1.0
    if n:
        _, first, inverse = np.unique(jobs, return_index=True, return_inverse=True)
        slot_of = np.argsort(np.argsort(first))  # slots in order of first appearance
        obs["task_job"][:n] = slot_of[inverse]

    # expected time left of running tasks, and when each device frees
    clock = np.array([d.clock_ratio or 1.0 for d in view.devices])
    frees = np.zeros(len(view.devices))
    if view.running:
        row_of = {int(t): i for i, t in enumerate(window)}
        for r in view.running:
            if r.device >= 0:
                runtime = st.work[r.task] * st.inv_speed_by_device[r.device, st.kind[r.task]]
                left = max(r.start + runtime / clock[r.device] - now, 0.0)
                frees[r.device] = max(frees[r.device], left)
            else:
                left = max(r.start + st.work[r.task] - now, 0.0)
            i = row_of.get(r.task)
            if i is not None:
                f[i, 13] = math.log1p(left / scale)

    # edges among window rows
    if n and st.edge_src.size:
        pos = np.full(view.table.n_tasks, -1, dtype=np.int64)
        pos[window] = np.arange(n)
        ps, pd = pos[st.edge_src], pos[st.edge_dst]
        keep = np.flatnonzero((ps >= 0) & (pd >= 0))[:m.edges]
        k = keep.size
        obs["edges"][:k, 0] = ps[keep]
        obs["edges"][:k, 1] = pd[keep]
        obs["edge_mask"][:k] = 1.0

    g = len(view.devices)
    d = obs["devices"]
    tele = np.array([(x.utilization, x.memory_used, x.memory_total, x.temperature_c, x.power_w,
                      x.power_limit_w, x.n_tasks, x.healthy) for x in view.devices])
    d[:g, 0] = tele[:, 0]
    d[:g, 1] = tele[:, 1] / tele[:, 2]
    d[:g, 2] = tele[:, 2] / st.max_memory
    d[:g, 3] = (tele[:, 2] - tele[:, 1]) / st.max_memory
    d[:g, 4] = tele[:, 3] / 100.0
    d[:g, 5] = tele[:, 4] / tele[:, 5]
    d[:g, 6] = clock * tele[:, 7]
    d[:g, 7] = np.log1p(tele[:, 6])
    d[:g, 8] = _logd(frees, scale)
    d[:g, 9] = tele[:, 7]
    d[:g, 10:12] = st.log_speed
    obs["device_mask"][:g] = 1.0

    q = obs["queue"]
    job_finished = np.asarray(view.job_remaining[:view.n_arrived]) <= 0
    q[0] = math.log1p(view.n_arrived - int(job_finished.sum()))
    q[1] = math.log1p(max(len(view.ready) - m.ready, 0))
    q[2] = float((tele[:, 6] > 0).sum()) / g
    q[3] = _logd(now - last_decision_time, scale) if last_decision_time is not None else 0.0
    q[4] = float(tele[:, 7].sum()) / g
    q[5] = math.log1p(max(int(((state != _DONE)).sum()) - n, 0))
    if advice is not None:
        row_of_task = {int(t): i for i, t in enumerate(window[:n_slots])}
        for k, p in enumerate(advice):
            if p is None:
                q[6 + k] = 1.0
                continue
            i = row_of_task.get(p.task)
            if i is not None:
                f[i, 16 + k] = 1.0
            d[p.device, 12 + k] = 1.0
    return Encoding(obs, window, n_slots)


def _advised_in_slots(ready: np.ndarray, advice: list[Placement | None], slots: int
                      ) -> np.ndarray:
    """``ready`` (in window order) with every advised task among the first
    ``slots``: the advised ones take the places of the last unadvised ones,
    and the slots keep window order. Without this, a heuristic that lets a
    short task deep in the queue share a busy GPU (share does) advises a
    placement the action space cannot express, and a policy cannot follow it."""
    advised = {p.task for p in advice if p is not None}
    late = [i for i in range(slots, ready.size) if int(ready[i]) in advised]
    if not late:
        return ready
    unadvised = [i for i in range(slots) if int(ready[i]) not in advised]
    out = unadvised[len(unadvised) - len(late):]
    taken = sorted(set(range(slots)) - set(out) | set(late))
    left = [i for i in range(ready.size) if i not in set(taken)]
    return ready[taken + left]


def action_mask(view: ClusterView, enc: Encoding, m: Maxima) -> np.ndarray:
    """Valid actions: ready slot ``i`` on device ``j`` where the device is
    healthy and has the memory free now (index ``i * m.devices + j``), and wait
    (the last index) while something runs."""
    mask = np.zeros(m.n_actions, dtype=bool)
    memory = view.table.memory
    for j, dev in enumerate(view.devices):
        if not dev.healthy:
            continue
        free = dev.memory_free + 1e-9
        for i in range(enc.n_slots):
            if memory[int(enc.window[i])] <= free:
                mask[i * m.devices + j] = True
    mask[-1] = bool(view.running)
    return mask
