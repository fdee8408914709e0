"""``DagSchedulingEnv``: place ready DAG tasks on GPUs, one placement per step."""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.advice import Advisors
from envs.encoder import (
    DEVICE_FEATURES,
    QUEUE_FEATURES,
    TASK_FEATURES,
    EdgeColumn,
    Encoding,
    EpisodeStatics,
    Maxima,
    action_mask,
    document_columns,
    empty_observation,
    encode,
    placement_of,
)
from envs.rewards import REWARDS, RewardMeter
from rlsched.arrivals import ARRIVALS, batch, online
from rlsched.estimates import EstimateModel
from rlsched.evaluation.evaluate import run_episode
from rlsched.metrics import measure
from rlsched.perturbations import Perturbations
from rlsched.schedulers import make_scheduler
from rlsched.sim import SimResult, Simulator
from rlsched.sources.specs import resolve_pool, resolve_workload
from rlsched.view import ClusterView, Placement
from rlsched.workload import validate_fits, validate_gangs, validate_placement

FEATURE_BOUND = 20.0


class InvalidActionError(ValueError):
    """An action the current mask does not allow."""


class MaskedDiscrete(spaces.Discrete):
    """``Discrete(n)`` whose ``sample()`` without a mask draws a valid action.

    The space reads the current mask from its environment (held weakly, and
    dropped when the space is copied or pickled, after which it samples like
    a plain ``Discrete``). So random agents, and the environment checkers of
    Gymnasium and Stable-Baselines3, act legally, while an invalid action
    given to ``step`` still raises.
    """

    def __init__(self, n: int, seed: int | None = None) -> None:
        super().__init__(n, seed=seed)
        self._mask_source: weakref.WeakMethod | None = None

    def bind(self, mask_method) -> None:
        self._mask_source = weakref.WeakMethod(mask_method)

    def sample(self, mask=None, probability=None) -> np.int64:
        if mask is None and probability is None and self._mask_source is not None:
            method = self._mask_source()
            if method is not None:
                valid = np.flatnonzero(method())
                if valid.size:  # Discrete.sample(mask)'s draw, less its checks of the mask:
                    # np_random.choice(valid)'s very draw (one integer below
                    # the size), without its argument handling (20 µs -> 4)
                    pick = self.np_random.integers(0, valid.size, dtype=np.int64)
                    return self.start + self.dtype.type(valid[pick])
        return super().sample(mask=mask, probability=probability)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_mask_source"] = None
        return state


class DagSchedulingEnv(gym.Env):
    """Schedule the tasks of DAG jobs on a simulated, heterogeneous GPU pool.

    Each step places one ready GPU task on one device, or waits. Time in the
    simulator only moves when the agent waits or when no further placement is
    possible at the current time; CPU-only tasks start by themselves.

    ## Action Space

    ``Discrete(M.ready * M.devices + 1)``. Action ``i * M.devices + j`` places
    the task in ready slot ``i`` (row ``i`` of ``tasks``) on device ``j``; the
    last action waits until the next event (a task ends, a job arrives, a
    device changes). :meth:`action_masks` gives the valid actions: a ready
    task in the slot, a device that exists, is healthy and has the task's
    memory free (devices may be shared while memory allows, each task then
    slowed), and waiting only while something runs. A task of N GPUs (a
    gang) is placed by naming its first device ``j``; its N - 1 mates are
    those :func:`envs.encoder.gang_of` picks on ``j``'s host (idle devices
    first, then the fastest for it), and the action is valid only where there
    are enough. An invalid action raises :class:`InvalidActionError`.
    ``action_space.sample()`` draws a valid one.

    ## Observation Space

    A ``Dict`` of fixed-shape float32 arrays made by :func:`envs.encoder.encode`,
    a plain function of the cluster view, the same one the live scheduler
    uses (:mod:`envs.encoder` says how the task window is chosen and ordered).
    Padding rows are 0, and 0 in their mask. Durations ("log-duration") are
    ``log1p(seconds / scale)`` with ``scale`` the episode's mean GPU-task work
    on the reference device; the rest are fractions, flags or ``log1p``
    counts. The columns of each block are the enums of :mod:`envs.encoder`,
    from which these tables and the spaces' sizes are made.

    * ``tasks`` (M.tasks x {len(TaskColumn)}): a window of the unfinished tasks, one per
      row, ready slots first (:class:`envs.encoder.TaskColumn`):

      {TaskColumn}

    * ``task_mask`` (M.tasks): 1 for a filled row.
    * ``task_job`` (M.tasks): the row's job as a window-local slot (0, 1, ...
      in order of first appearance).
    * ``edges`` (M.edges x {len(EdgeColumn)}): parent -> child pairs of window rows
      (:class:`envs.encoder.EdgeColumn`):

      {EdgeColumn}

    * ``edge_mask`` (M.edges): 1 for a filled edge row.
    * ``devices`` (M.devices x {len(DeviceColumn)}): telemetry, speeds and advice, one row
      per device of the pool (:class:`envs.encoder.DeviceColumn`):

      {DeviceColumn}

    * ``device_mask`` (M.devices): 1 for a device of the pool.
    * ``queue`` ({len(QueueColumn)}): global features (:class:`envs.encoder.QueueColumn`):

      {QueueColumn}

    ## Rewards

    Chosen by ``reward``, each normalised by a lower bound so returns are
    ratios of order 1 whatever the workload's time scale:

    * ``jct``: minus the time-integral of the number of jobs in the system
      (as in Decima), over the sum of the jobs' critical paths; the return is
      minus average JCT over its lower bound.
    * ``weighted_jct``: the same with each job weighted by its priority.
    * ``makespan``: minus the elapsed time over the makespan lower bound;
      the return is minus makespan over its lower bound.

    With ``baseline`` (a heuristic's name), the same reward of that heuristic
    run on the same episode (same arrivals, same perturbations) over the same
    interval is subtracted at every step, and what remains of it after the
    last step at the end: the return becomes how much better than the
    heuristic the episode went, in the same units. Given several names, the
    one that does best on the episode (by the reward's own measure: average
    JCT, weighted JCT or makespan; the first on a tie) is the baseline: the
    return is then the gain over the best of them, whichever it is. This is Decima's
    input-dependent baseline, folded into the reward as potential-based
    shaping (the potential is the heuristic's accumulated cost up to the
    current time), so the best policy is unchanged. It takes out of the
    return what the arrival sequence alone decides (a burst of big jobs makes
    every policy look bad), which otherwise drowns the effect of the actions.

    ## Starting State

    ``reset(seed=...)`` draws from ``self.np_random`` only: the workload
    sample (an instance of the SPEC, or a new synthetic draw), the arrival
    times (all at 0 for ``batch``; a Poisson stream of all the SPEC's jobs at
    offered ``load`` for ``poisson``) and the perturbations' seed. The first
    observation is the first decision point.

    ## Episode End

    Terminates when every task has finished; the final ``info`` holds
    ``makespan``, ``avg_jct``, ``weighted_jct``, ``lower_bound`` and
    ``jct_lower_bound`` (and with a ``baseline``, ``baseline_avg_jct`` and
    ``baseline_makespan``). There is no truncation: every decision point has a
    valid action and every episode ends.

    ## Arguments

    :param workload: workload SPEC (``stg:PATH``, ``wfcommons:PATH``,
        ``jobs:PATH``, ``synthetic:NAME?...``)
    :param pool: pool SPEC (``identical:N``, ``preset:NAME``, ``file:PATH``)
    :param arrivals: ``batch``, ``poisson`` or ``trace`` (each instance at its own arrival times)
    :param load: offered load of ``poisson`` arrivals
    :param reward: ``jct``, ``weighted_jct`` or ``makespan``
    :param perturb: ``none``, ``all`` or a list of ``throttle,external,failures``
    :param max_tasks: task window rows (``M.tasks``)
    :param max_ready: ready slots in the action space (``M.ready``)
    :param max_devices: device rows (``M.devices``); the pool must fit
    :param max_edges: edge rows (``M.edges``)
    :param seed: seed of the first ``reset()`` when it is given none
    :param baseline: a heuristic whose run on the same episode is subtracted
        from the reward, or several, of which the best on each episode is
        (see Rewards); None: plain rewards
    :param estimates: what the policy is told of runtimes (an estimate model
        of :mod:`rlsched.estimates`: ``default``, ``exact``, ``noisy:SIGMA[:BIAS]``,
        ``none``); it sees predictions, never the truth
    """

    metadata = {"render_modes": []}

    def __init__(self, workload: str, pool: str, arrivals: str = "batch", load: float = 0.85,
                 reward: str = "jct", perturb: str = "none", max_tasks: int = 64,
                 max_ready: int = 16, max_devices: int = 8, max_edges: int = 256,
                 seed: int | None = None, baseline: str | Sequence[str] | None = None,
                 estimates: str = "default") -> None:
        if arrivals not in ARRIVALS:
            raise ValueError(f"arrivals must be one of {', '.join(ARRIVALS)}, not {arrivals!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}, not {reward!r}")
        self.source = resolve_workload(workload)
        self.pool = resolve_pool(pool)
        self.maxima = Maxima(max_tasks, max_ready, max_devices, max_edges)
        if len(self.pool) > max_devices:
            raise ValueError(f"pool {pool} has {len(self.pool)} devices but max_devices is "
                             f"{max_devices}: raise max_devices")
        self.workload_spec, self.pool_spec = workload, pool
        self.arrivals, self.load, self.reward_name = arrivals, load, reward
        self.perturbations = Perturbations.parse(perturb)
        self.estimates = EstimateModel.parse(estimates, "estimates")
        self._first_seed = seed
        names = [baseline] if isinstance(baseline, str) else list(baseline or ())
        self.baselines = [make_scheduler(n) for n in names]
        self._baseline_result: SimResult | None = None
        m = self.maxima
        bound = FEATURE_BOUND
        self.observation_space = spaces.Dict({
            "tasks": spaces.Box(-bound, bound, (m.tasks, TASK_FEATURES), np.float32),
            "task_mask": spaces.Box(0.0, 1.0, (m.tasks,), np.float32),
            "task_job": spaces.Box(0.0, float(m.tasks - 1), (m.tasks,), np.float32),
            "edges": spaces.Box(0.0, float(m.tasks - 1), (m.edges, len(EdgeColumn)), np.float32),
            "edge_mask": spaces.Box(0.0, 1.0, (m.edges,), np.float32),
            "devices": spaces.Box(-bound, bound, (m.devices, DEVICE_FEATURES), np.float32),
            "device_mask": spaces.Box(0.0, 1.0, (m.devices,), np.float32),
            "queue": spaces.Box(-bound, bound, (QUEUE_FEATURES,), np.float32),
        })
        self.action_space = MaskedDiscrete(m.n_actions)
        self.action_space.bind(self.action_masks)
        self.advisors = Advisors()
        self._advice: list[Placement | None] = []
        self.sim: Simulator | None = None
        self._view: ClusterView | None = None
        self._enc: Encoding | None = None
        self._mask = np.zeros(m.n_actions, dtype=bool)

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and self._first_seed is not None and self.sim is None:
            seed = self._first_seed
        super().reset(seed=seed)
        rng = self.np_random
        instances = self.source.instances(int(rng.integers(2**31)))
        if self.arrivals == "batch":
            instance = batch(instances[int(rng.integers(len(instances)))])
        elif self.arrivals == "trace":
            instance = instances[int(rng.integers(len(instances)))]
        else:
            instance = online(instances, self.pool, self.load, rng, source=self.workload_spec)
        validate_fits(instance, self.pool.max_memory, self.pool.name)
        validate_placement(instance, self.pool)
        validate_gangs(instance, self.pool)
        self.instance = instance
        self.sim = Simulator(instance, self.pool, int(rng.integers(2**31)), self.perturbations,
                             self.estimates)
        self.advisors.reset(self.sim.seed)
        self.meter = RewardMeter(self.reward_name, self.sim.table, self.sim.work, self.pool)
        if self.baselines:
            runs = [run_episode(instance, self.pool, b, self.sim.seed, self.perturbations,
                                self.estimates) for b in self.baselines]
            self._baseline_result = min(runs, key=self._baseline_score)
        self._last_time: float | None = None
        view = self.sim.reset()
        if view is not None:
            self.statics = EpisodeStatics(self.sim.table, self.pool, view.predicted)
        self._set_view(view)
        return self._obs(), {}

    def step(self, action):
        if self._view is None:
            raise RuntimeError("the episode is over (or never began): call reset()")
        a = int(action)
        if not 0 <= a < self.maxima.n_actions or not self._mask[a]:
            raise InvalidActionError(self._explain(a))
        before = self._view.time
        placements = placement_of(self._view, self._enc, self.maxima, a)
        self._last_time = before
        view = self.sim.step(placements)
        after = view.time if view is not None else self.sim.now
        reward = self.meter.reward(before, after, self.sim.job_finish)
        terminated = view is None
        base = self._baseline_result
        if base is not None:
            until = math.inf if terminated else after
            reward -= self.meter.reward(before, until, base.job_finish,
                                        makespan=max(base.job_finish))
        self._set_view(view)
        info: dict[str, Any] = {}
        if terminated:
            m = measure(self.sim.result())
            info = {"makespan": m.makespan, "avg_jct": m.avg_jct, "weighted_jct": m.weighted_jct,
                    "lower_bound": m.lower_bound, "jct_lower_bound": m.jct_lower_bound}
            if base is not None:
                mb = measure(base)
                info.update(baseline_avg_jct=mb.avg_jct, baseline_makespan=mb.makespan)
        return self._obs(), reward, terminated, False, info

    def action_masks(self) -> np.ndarray:
        """The valid actions now (a copy), for MaskablePPO and random agents."""
        return self._mask.copy()

    @property
    def view(self) -> ClusterView | None:
        """The cluster view of the current decision point (``None`` at the end)."""
        return self._view

    @property
    def advice(self) -> list[Placement | None]:
        """What each advisor (:data:`envs.advice.ADVISORS`) would place first
        now, as the observation shows it (None: it would wait)."""
        return list(self._advice)

    def action_for(self, placement: Placement | None) -> int:
        """The action that makes ``placement`` (``None``: wait); raises if the
        task is not in a ready slot."""
        if placement is None:
            return self.maxima.n_actions - 1
        slots = [int(t) for t in self._enc.window[:self._enc.n_slots]]
        if placement.task not in slots:
            raise InvalidActionError(f"task {placement.task} is not in a ready slot "
                                     f"(slots hold {slots})")
        return slots.index(placement.task) * self.maxima.devices + placement.device

    # ------------------------------------------------------------------ internals
    def _set_view(self, view: ClusterView | None) -> None:
        self._view = view
        if view is None:
            self._enc = None
            self._mask = np.zeros(self.maxima.n_actions, dtype=bool)
            self._mask[-1] = True  # a harmless placeholder after the end
            return
        self._advice = self.advisors.advise(view)
        self._enc = encode(view, self.statics, self.maxima, self._last_time, self._advice)
        self._mask = action_mask(view, self._enc, self.maxima)

    def _baseline_score(self, result: SimResult) -> float:
        """What the reward measures of a baseline's run (lower is better)."""
        m = measure(result)
        return {"jct": m.avg_jct, "weighted_jct": m.weighted_jct}.get(self.reward_name,
                                                                      m.makespan)

    def _obs(self) -> dict[str, np.ndarray]:
        if self._enc is None:
            return empty_observation(self.maxima)
        return self._enc.obs

    def _explain(self, a: int) -> str:
        m = self.maxima
        if not 0 <= a < m.n_actions:
            return f"action {a} is outside Discrete({m.n_actions})"
        if a == m.n_actions - 1:
            return "wait is not allowed while nothing runs (it would never end); place a task"
        slot, device = divmod(a, m.devices)
        if slot >= self._enc.n_slots:
            return (f"action {a} places ready slot {slot}, but only {self._enc.n_slots} slot(s) "
                    "hold a ready task; use env.action_masks()")
        if device >= len(self._view.devices):
            return f"action {a} places on device {device}, but the pool has {len(self._view.devices)}"
        task = int(self._enc.window[slot])
        dev = self._view.devices[device]
        if not dev.healthy:
            return f"action {a} places on device {device}, which is not healthy"
        return (f"action {a} places a task needing {self._view.table.memory[task]:.2f} GiB on "
                f"device {device}, which has {dev.memory_free:.2f} GiB free")


# the docstring is the MDP spec; its column tables and sizes come from the encoder's enums
DagSchedulingEnv.__doc__ = document_columns(DagSchedulingEnv.__doc__)
