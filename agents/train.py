"""Training: imitation of a teacher, then MaskablePPO, watched in TensorBoard.

Reads top to bottom: load the config, build the environments (one or more
*kinds* of episode, each with its own teacher), warm-start the policy by
behaviour cloning of the teachers and then DAgger (the policy drives, the
teacher labels every state it reaches, so the policy learns to recover from
its own mistakes, which plain cloning never shows it), run PPO with two
callbacks (:class:`EpisodeMetricsCallback` logs the training episodes,
:class:`ValidationCallback` validates every K steps and keeps the best
checkpoint), save checkpoints with their cards.

TensorBoard scalars (``runs/NAME/``): ``charts/episode_avg_jct``,
``charts/episode_makespan`` and, with a reward baseline,
``charts/episode_jct_over_baseline`` (training episodes), ``charts/val_avg_jct`` and
``charts/val_ratio_to_best_heuristic`` (the fixed validation episodes of
every kind, each kind's average JCT over its best heuristic's, averaged;
below 1 means better than every heuristic), ``charts/bc_loss`` (per epoch of
cloning, then of each DAgger round, then of anchoring),
``charts/dagger_ratio`` (the policy's average JCT over its teacher's on the
states it drove into); ``rollout/``, ``time/`` and ``train/`` as SB3 logs
them; the config as text.

The x axis (TensorBoard's *step*) is one counter for the whole run, and every
tag's points lie at distinct, increasing steps on it (TensorBoard keeps only
the last point of a step written again, and drops every later one when a
step goes back). What a step means depends on the phase:

- *Cloning and DAgger* come before PPO, at negative steps: one per fitting
  epoch (``charts/bc_loss``; a DAgger round's ``charts/dagger_ratio`` at its
  first epoch), the last at -1.
- *PPO*: SB3's environment steps (``num_timesteps``, summed over the
  environments: the count of ``step_N.zip`` and of the cards). The policy as
  cloned is validated at 0 (a run started with ``--resume`` continues its
  checkpoint's count, and so the axis), then every ``eval_every`` steps; SB3's
  ``rollout/``, ``time/``, ``train/`` (of the update before) and the training
  episodes are written at the end of each rollout and with each validation.
- *After PPO*, whose last rollout ends at step E: its last update and the
  validation after it at E + 1, the anchoring epochs at E + 2, E + 3, ...,
  and the anchored policy's validation one step after the last of them.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from agents import trained_workloads
from agents.gnn import GnnMaskablePolicy
from agents.scheduler import RLScheduler, card_path
from envs.advice import ADVISORS, Advisors
from envs.dag_env import DagSchedulingEnv
from envs.encoder import ENCODER_VERSION
from rlsched.errors import InputError
from rlsched.estimates import EstimateModel
from rlsched.evaluation.evaluate import episodes, run_episode
from rlsched.lookahead import best_candidate
from rlsched.metrics import measure
from rlsched.perturbations import Perturbations
from rlsched.schedulers import ORACLE, Scheduler, make_scheduler
from rlsched.sources.specs import resolve_pool
from rlsched.view import EVERY_KIND, ClusterView, Placement, TaskState


@dataclass
class TrainConfig:
    """Everything a training run depends on (with its seed, it reproduces it)."""

    name: str = "default"
    workload: str = "wfcommons:workloads/wfcommons"
    pool: str = "preset:workstation-4"
    arrivals: str = "poisson"
    load: float = 0.85
    perturb: str = "all"
    #: what the policy is told of runtimes (an estimate model: default,
    #: noisy:SIGMA[:BIAS], none, exact); it learns from predictions, never the truth
    estimates: str = "default"
    reward: str = "jct"
    max_tasks: int = 64
    max_ready: int = 16
    max_devices: int = 8
    max_edges: int = 256
    policy: str = "gnn"  # gnn | mlp
    hidden: int = 32
    rounds: int = 2
    seed: int = 0
    n_envs: int = 2
    total_steps: int = 200_000
    learning_rate: float = 3e-4
    n_steps: int = 512
    batch_size: int = 256
    n_epochs: int = 4
    gamma: float = 0.999
    gae_lambda: float = 0.95
    ent_coef: float = 0.003
    clip_range: float = 0.2
    #: the critic gets a graph network of its own: PPO's value loss, large
    #: while the critic is new, then never moves the features the cloned
    #: actor reads (by default they share one, as SB3's actor-critics do)
    separate_critic: bool = False
    teacher: str = "tetris"
    bc_episodes: int = 20
    bc_epochs: int = 8
    #: learning rate of cloning and DAgger (PPO's is ``learning_rate``)
    bc_learning_rate: float = 3e-4
    dagger_rounds: int = 0
    #: after PPO: episodes per kind of the anchoring round, and its epochs
    anchor_episodes: int = 0
    anchor_epochs: int = 2
    dagger_episodes: int = 4
    target_kl: float | None = None
    #: PPO's reward is the gain over this heuristic run on the same episode
    #: (``teacher``: each kind's teacher; ``none``: the plain reward), or over
    #: the best on each episode of a list of them (``[teacher, sjf]``); see
    #: :class:`envs.DagSchedulingEnv`
    reward_baseline: str | list[str] = "none"
    #: several kinds of episode, each a mapping of workload, pool, arrivals,
    #: load, perturb, teacher (missing keys: the settings above); empty: one
    #: kind, the settings above
    kinds: list[dict[str, Any]] = field(default_factory=list)
    #: the kinds validation (and so ``best.zip``) is measured on, as ``kinds``;
    #: empty: the kinds trained on. Name families the training kinds leave
    #: out (``wfcommons:DIR?exclude=montage`` to train, ``?family=montage``
    #: to validate): a policy is chosen by what it never saw
    validation_kinds: list[dict[str, Any]] = field(default_factory=list)
    validation_seeds: list[int] = field(default_factory=lambda: [500, 501])
    #: at most this many validation episodes per kind and seed (batch kinds
    #: have one per instance)
    validation_instances: int = 10
    heuristics: list[str] = field(default_factory=lambda: ["fifo", "sjf", "cp", "tetris", "heft", "share"])
    eval_every: int = 20_000
    checkpoint_every: int = 50_000
    runs_dir: str = "runs"
    checkpoints_dir: str = "checkpoints"
    torch_threads: int = 1

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            raise InputError(str(path), f"cannot read config ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise InputError(str(path), f"not valid YAML ({e})") from None
        if not isinstance(doc, dict):
            raise InputError(str(path), "a training config is a mapping of settings")
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise InputError(str(path), f"unknown setting(s) {', '.join(sorted(unknown))}")
        cfg = cls(**doc)
        for name in cfg.baseline_names():
            if name not in ("none", "teacher"):
                try:
                    make_scheduler(name)
                except InputError as e:
                    raise InputError(str(path), f"reward_baseline: {e.problem}") from None
        for setting, listed in (("kinds", cfg.kinds), ("validation_kinds", cfg.validation_kinds)):
            for k in listed:
                bad = set(k) - set(KIND_KEYS) if isinstance(k, dict) else {"(not a mapping)"}
                if bad:
                    raise InputError(str(path), f"{setting}: unknown key(s) "
                                     f"{', '.join(sorted(bad))} (known: {', '.join(KIND_KEYS)})")
        for kind in cfg.episode_kinds() + cfg.validation_episode_kinds():
            EstimateModel.parse(kind.estimates, f"{path}: estimates")
            names = [kind.teacher.removeprefix("lookahead:"), *cfg.heuristics,
                     *cfg.baseline_names()]
            if any(n.startswith(ORACLE) for n in names[1:]):
                raise InputError(str(path), "an oracle (oracle:NAME) is a bound for evaluate, "
                                 "or a teacher; a reference heuristic or a baseline is told "
                                 "what the policy is told")
            try:
                make_scheduler(names[0])
            except InputError as e:
                raise InputError(str(path), f"teacher: {e.problem}") from None
        return cfg

    def baseline_names(self) -> list[str]:
        """``reward_baseline`` as a list of names."""
        listed = self.reward_baseline
        return [listed] if isinstance(listed, str) else list(listed)

    def episode_kinds(self) -> list[Kind]:
        """The kinds of episode trained on (one, from the top-level settings,
        where ``kinds`` is empty)."""
        base = {k: getattr(self, k) for k in KIND_KEYS if k not in ("repeat", "anchor")}
        return [Kind(**{**base, **k}) for k in (self.kinds or [{}])]

    def validation_episode_kinds(self) -> list[Kind]:
        """The kinds validated on: ``validation_kinds`` (missing keys: the
        settings above), else the kinds trained on."""
        if not self.validation_kinds:
            return self.episode_kinds()
        base = {k: getattr(self, k) for k in KIND_KEYS if k not in ("repeat", "anchor")}
        return [Kind(**{**base, **k}) for k in self.validation_kinds]


KIND_KEYS = ("workload", "pool", "arrivals", "load", "perturb", "estimates", "teacher", "repeat",
             "anchor")


@dataclass(frozen=True)
class Kind:
    """One kind of training episode, and the heuristic its policy imitates."""

    workload: str
    pool: str
    arrivals: str
    load: float
    perturb: str
    estimates: str
    teacher: str
    #: imitation episodes of this kind per episode of the others (short
    #: episodes, such as one DAG in a batch, need more to weigh the same)
    repeat: int = 1
    #: pulled back onto its teacher after PPO (see :func:`anchor`)
    anchor: bool = False

    @property
    def label(self) -> str:
        return f"{self.workload} on {self.pool} ({self.arrivals})"

    @property
    def tag(self) -> str:
        """The label as a TensorBoard tag's last part (``wfcommons_workloads_wfcommons_family_
        montage_on_identical_8_poisson``): letters, digits and underscores."""
        return re.sub(r"[^A-Za-z0-9]+", "_", self.label).strip("_")


def make_env(cfg: TrainConfig, seed: int | None = None, kind: Kind | None = None,
             baseline: str | list[str] | None = None) -> DagSchedulingEnv:
    k = kind or cfg.episode_kinds()[0]
    return DagSchedulingEnv(k.workload, k.pool, arrivals=k.arrivals, load=k.load,
                            reward=cfg.reward, perturb=k.perturb, max_tasks=cfg.max_tasks,
                            max_ready=cfg.max_ready, max_devices=cfg.max_devices,
                            max_edges=cfg.max_edges, seed=seed, baseline=baseline,
                            estimates=k.estimates)


def reward_baseline(cfg: TrainConfig, kind: Kind) -> list[str] | None:
    """The heuristics PPO's reward is measured against on episodes of
    ``kind`` (the best of them on each episode), or None."""
    names = [base_heuristic(kind.teacher) if n == "teacher" else n
             for n in cfg.baseline_names() if n != "none"]
    return list(dict.fromkeys(names)) or None


def base_heuristic(teacher: str) -> str:
    """The heuristic behind a teacher: itself, or the base of ``lookahead:BASE``
    or ``oracle:BASE`` (a baseline is told what the policy is told)."""
    return teacher.partition(":")[2] if teacher.startswith(("lookahead:", ORACLE)) else teacher


def _monitored_env(cfg: TrainConfig, kind: Kind, seed: int):
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(make_env(cfg, kind=kind, baseline=reward_baseline(cfg, kind)))
    env.reset(seed=seed)
    return env


def build_model(cfg: TrainConfig, env, tensorboard_log: str | None):
    from sb3_contrib import MaskablePPO

    if cfg.policy == "gnn":
        policy, kwargs = GnnMaskablePolicy, {"hidden": cfg.hidden, "rounds": cfg.rounds,
                                             "n_ready": cfg.max_ready,
                                             "share_features_extractor": not cfg.separate_critic}
    elif cfg.policy == "mlp":
        policy, kwargs = "MultiInputPolicy", {}
    else:
        raise InputError("policy", f"unknown policy '{cfg.policy}' (use gnn or mlp)")
    return MaskablePPO(policy, env, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
                       batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma,
                       gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef,
                       clip_range=cfg.clip_range, target_kl=cfg.target_kl,
                       policy_kwargs=kwargs, seed=cfg.seed,
                       tensorboard_log=tensorboard_log, device="cpu", verbose=0)


class Teacher(Protocol):
    """What behaviour cloning and DAgger ask of a kind's teacher."""

    name: str

    def reset(self, seed: int) -> None:
        """Start an episode whose simulator was seeded with ``seed``."""

    def action(self, env: DagSchedulingEnv, mask: np.ndarray) -> int | None:
        """The label of the environment's current state: an action ``mask``
        allows, or None where the teacher's choice is not one (the state is
        then left unlabelled)."""


class HeuristicTeacher:
    """A heuristic as a teacher: its choice in the environment's current
    state. An advisor's choice is read from the environment (the one its
    observation shows); another heuristic runs beside it.

    :param name: the heuristic (a scheduler name)
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.advisor = ADVISORS.index(name) if name in ADVISORS else None
        self.scheduler = None if self.advisor is not None else make_scheduler(
            name, search_evaluations=500)

    def reset(self, seed: int) -> None:
        if self.scheduler is not None:
            self.scheduler.reset(seed)

    def action(self, env: DagSchedulingEnv, mask: np.ndarray) -> int | None:
        """The teacher's action, or None where the policy cannot express it
        (its task is outside the ready slots)."""
        if self.advisor is not None:
            placement = env.advice[self.advisor]
        else:
            placements = self.scheduler.decide(env.view)
            placement = placements[0] if placements else None
        try:
            action = env.action_for(placement)
        except ValueError:
            return None
        return action if mask[action] else None


class LookaheadTeacher:
    """``lookahead:BASE``: a hindsight teacher. At each state it tries the
    advisors' placements and waiting, plays each out to the end of the
    episode with BASE on a fork of the environment's simulator (the same
    future arrivals and perturbations), and labels the one that ends with
    the least total JCT (see :mod:`rlsched.lookahead`). Costly (a play-out
    per distinct candidate per state), and it knows the future, so it only
    ever labels states; the policy it teaches sees the observation alone.

    :param name: ``lookahead:BASE``
    :param margin: the first advisor's placement is labelled unless another
        candidate beats it by more than this fraction of its total JCT (see
        :func:`rlsched.lookahead.best_candidate`)
    """

    def __init__(self, name: str, margin: float = 0.0) -> None:
        self.name = name
        self.base = make_scheduler(name.partition(":")[2])
        self.margin = margin

    def reset(self, seed: int) -> None:
        """Nothing to do: every play-out resets BASE itself."""

    def action(self, env: DagSchedulingEnv, mask: np.ndarray) -> int | None:
        candidates: list[Placement | None] = list(env.advice)
        if mask[-1]:
            candidates.append(None)
        candidates = [c for c in candidates if mask[env.action_for(c)]]
        if not candidates:
            return None
        best, _ = best_candidate(env.sim, candidates, self.base, margin=self.margin)
        return env.action_for(best)


class PrivilegedTeacher:
    """``oracle:NAME``: heuristic NAME told the true runtimes, as a teacher.

    The policy sees predictions; its teacher sees, in the same state, what
    the simulator knows: every task's true work, and each job's true
    remaining work. What the policy learns from it is its best guess, from
    what it is told, of what NAME would do if it knew (learning from a
    privileged expert). Only labels come from the truth; the policy's
    observation never holds it. NAME answers a batch at a time, kept as
    the environment's advisors keep theirs (:class:`envs.advice.Advisors`).

    :param name: ``oracle:NAME``
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.advisors = Advisors((name.removeprefix(ORACLE),))

    def reset(self, seed: int) -> None:
        self.advisors.reset(seed)

    def action(self, env: DagSchedulingEnv, mask: np.ndarray) -> int | None:
        (placement,) = self.advisors.advise(truth_view(env.view, env.sim.work))
        try:
            action = env.action_for(placement)
        except ValueError:
            return None
        return action if mask[action] else None


def truth_view(view: ClusterView, work: Sequence[float]) -> ClusterView:
    """``view`` with the true runtimes in place of the predictions: what an
    exact-estimate simulator would show in the same state."""
    table = view.table
    unfinished = np.frombuffer(view.task_state, dtype=np.uint8) != TaskState.DONE
    true_work = np.asarray(work, dtype=float)
    remaining = np.bincount(np.asarray(table.job_of), weights=true_work * unfinished,
                            minlength=table.n_jobs)
    return view._replace(predicted=work, spread=[0.0] * len(work),
                         job_remaining=tuple(remaining.tolist()), knowledge=0,
                         open_knowledge=0, known_kinds=EVERY_KIND)


def make_teacher(name: str, margin: float = 0.0) -> Teacher:
    if name.startswith("lookahead:"):
        return LookaheadTeacher(name, margin)
    return PrivilegedTeacher(name) if name.startswith(ORACLE) else HeuristicTeacher(name)


def collect(cfg: TrainConfig, kind: Kind, episodes: int, seed: int, model=None,
            self_labelled: bool = False) -> tuple[list[dict], list[np.ndarray], list[int], float]:
    """Run ``episodes`` of a kind and label every state with its teacher's
    action. The teacher drives (``model`` None: behaviour cloning) or the
    policy does (DAgger); ``self_labelled``: the policy's own action is the
    label. Returns observations, masks, labels and the mean average JCT of
    the episodes."""
    env = make_env(cfg, kind=kind)
    teacher = make_teacher(kind.teacher)
    obs_list, mask_list, actions, jcts = [], [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        teacher.reset(env.sim.seed)
        done, info = False, {}
        while not done:
            mask = env.action_masks()
            label = None if self_labelled else teacher.action(env, mask)
            if model is not None:
                a, _ = model.predict(obs, action_masks=mask, deterministic=True)
                action = int(np.asarray(a).reshape(-1)[0])
                if self_labelled:
                    label = action
            if label is not None:
                obs_list.append(obs)
                mask_list.append(mask)
                actions.append(label)
            if model is None:
                action = label if label is not None else int(np.flatnonzero(mask)[0])
            obs, _, done, _, info = env.step(action)
        jcts.append(info["avg_jct"])
    return obs_list, mask_list, actions, statistics.fmean(jcts)


def fit(policy, obs_list: list[dict], mask_list: list[np.ndarray], actions: list[int],
        epochs: int, batch_size: int, seed: int, writer=None, step0: int = 0) -> list[float]:
    """Maximise the likelihood of the labelled actions (cross-entropy over the
    valid actions). With a ``writer``, each epoch's loss is written at its own
    step: ``step0``, ``step0 + 1``, ..."""
    keys = obs_list[0].keys()
    data = {k: torch.as_tensor(np.stack([o[k] for o in obs_list])) for k in keys}
    masks = np.stack(mask_list)
    acts = torch.as_tensor(actions)
    rng = np.random.default_rng(seed)
    losses = []
    for epoch in range(epochs):
        order = rng.permutation(len(actions))
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            dist = policy.get_distribution({k: v[idx] for k, v in data.items()},
                                           action_masks=masks[idx])
            loss = -dist.log_prob(acts[idx]).mean()
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            policy.optimizer.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(order))
        if writer is not None:
            writer.record("charts/bc_loss", losses[-1])
            writer.dump(step0 + epoch)
    return losses


def behaviour_cloning(model, cfg: TrainConfig, writer=None, progress: bool = False
                      ) -> list[float]:
    """Warm-start: clone each kind's teacher, then DAgger rounds: the policy
    drives, the teachers label, the policy is fitted to everything so far.

    The policy's own seeds (``cfg.seed * 1000 + ...``) never overlap the
    validation or benchmark seeds. Logged at negative steps, one per epoch,
    so that PPO's start at step 0 follows the last (see the module docstring).
    """
    kinds = cfg.episode_kinds()
    dagger_epochs = max(1, cfg.bc_epochs // 2)
    step = -(cfg.bc_epochs + cfg.dagger_rounds * dagger_epochs)
    data: tuple[list, list, list] = ([], [], [])
    optimizer = model.policy.optimizer
    ppo_lrs = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = cfg.bc_learning_rate
    per_kind = max(1, cfg.bc_episodes // len(kinds))
    bar = _bar(len(kinds) * (1 + cfg.dagger_rounds), "imitation", progress)
    for i, kind in enumerate(kinds):
        o, m, a, _ = collect(cfg, kind, per_kind * kind.repeat, cfg.seed * 1000 + 100 * i)
        for store, new in zip(data, (o, m, a)):
            store.extend(new)
        bar.update()
    losses = fit(model.policy, *data, cfg.bc_epochs, cfg.batch_size, cfg.seed, writer, step)
    for r in range(cfg.dagger_rounds):
        ratios = []
        for i, kind in enumerate(kinds):
            n = cfg.dagger_episodes * kind.repeat
            seed = cfg.seed * 100_000 + 10_000 * (i + 1) + 1_000 * (r + 1)
            o, m, a, jct = collect(cfg, kind, n, seed, model)
            _, _, _, teacher_jct = collect(cfg, kind, n, seed)
            ratios.append(jct / teacher_jct)
            for store, new in zip(data, (o, m, a)):
                store.extend(new)
            bar.update()
        if writer is not None:
            writer.record("charts/dagger_ratio", statistics.fmean(ratios))
        losses += fit(model.policy, *data, dagger_epochs, cfg.batch_size, cfg.seed + r + 1,
                      writer, step0=step + len(losses))
    bar.close()
    for g, lr in zip(optimizer.param_groups, ppo_lrs):
        g["lr"] = lr
    return losses


def anchor(model, cfg: TrainConfig, writer=None, step0: int = 0) -> list[float]:
    """After PPO: pull the kinds marked ``anchor`` back onto their teachers
    (one DAgger round) without moving the others, whose states the policy
    labels itself. PPO's noisy updates on one kind of episode drift the
    shared weights on another; where a teacher is already optimal or nearly
    (cp on a batch DAG), that drift only loses. Each epoch's loss is logged at
    its own step from ``step0`` on."""
    data: tuple[list, list, list] = ([], [], [])
    for i, kind in enumerate(cfg.episode_kinds()):
        seed = cfg.seed * 100_000 + 90_000 + 1_000 * i
        n = cfg.anchor_episodes * kind.repeat
        if kind.anchor:
            o, m, a, _ = collect(cfg, kind, n, seed, model)
        else:
            o, m, a, _ = collect(cfg, kind, n, seed, model, self_labelled=True)
        for store, new in zip(data, (o, m, a)):
            store.extend(new)
    optimizer = model.policy.optimizer
    for g in optimizer.param_groups:
        g["lr"] = cfg.bc_learning_rate / 3
    return fit(model.policy, *data, cfg.anchor_epochs, cfg.batch_size, cfg.seed, writer, step0)


def _bar(total: int, what: str, on: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="batch of episodes", disable=not on)


class Validator:
    """Average JCT of a policy on fixed validation episodes of every kind,
    against the heuristics: per kind, the ratio to the best heuristic there."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.kinds = cfg.validation_episode_kinds()
        self.plans = []
        for kind in self.kinds:
            pool = resolve_pool(kind.pool)
            plan = []
            for j, seed in enumerate(cfg.validation_seeds):
                eps = episodes([kind.workload], pool, kind.arrivals, kind.load, [seed])
                # batch kinds: other instances for each seed, not the same again
                first = (j * cfg.validation_instances) % len(eps)
                plan += eps[first:first + cfg.validation_instances]
            self.plans.append((pool, plan, Perturbations.parse(kind.perturb),
                               EstimateModel.parse(kind.estimates, "estimates")))
        self.heuristics = [{h: self._score(make_scheduler(h), i) for h in cfg.heuristics}
                           for i in range(len(self.kinds))]
        self.best = [min(h.values()) for h in self.heuristics]

    def _score(self, scheduler, i: int) -> float:
        pool, plan, perturb, estimates = self.plans[i]
        return statistics.fmean(
            measure(run_episode(inst, pool, scheduler, seed, perturb, estimates)).avg_jct
            for _, inst, seed in plan)

    def evaluate(self, scheduler) -> dict[str, Any]:
        """``ratio`` (mean over kinds of average JCT over the best
        heuristic's), and per kind the policy's and the heuristics' JCT."""
        out = []
        for i, kind in enumerate(self.kinds):
            jct = self._score(scheduler, i)
            out.append({"kind": kind.label, "avg_jct": jct, "ratio": jct / self.best[i],
                        "heuristics_avg_jct": self.heuristics[i]})
        return {"ratio": statistics.fmean(k["ratio"] for k in out),
                "avg_jct": statistics.fmean(k["avg_jct"] for k in out), "kinds": out}


def validate_schedulers(cfg: TrainConfig, schedulers: dict[str, Scheduler],
                        done: Callable[[dict[str, Any]], None] | None = None
                        ) -> list[dict[str, Any]]:
    """Each of ``schedulers`` (by name: ``rl:PATH`` or a heuristic) validated
    as training validates (:class:`Validator`, the config's validation kinds
    and seeds): its mean ratio to the best heuristic and each kind's
    (``done`` is called with each as it is ready: they take minutes)."""
    validator = Validator(cfg)
    out: list[dict[str, Any]] = []
    for name, scheduler in schedulers.items():
        result = validator.evaluate(scheduler)
        out.append({"scheduler": name, "ratio": result["ratio"],
                    "validation_seeds": cfg.validation_seeds,
                    "kinds": [{"kind": k["kind"], "ratio": k["ratio"], "avg_jct": k["avg_jct"],
                               "best_heuristic": min(k["heuristics_avg_jct"],
                                                     key=k["heuristics_avg_jct"].__getitem__)}
                              for k in result["kinds"]]})
        if done is not None:
            done(out[-1])
    return out


def save_checkpoint(model, cfg: TrainConfig, path: Path, steps: int,
                    evaluation: dict[str, Any], origin: dict[str, Any] | None = None) -> Path:
    """Save ``model`` at ``path`` with its card beside it; ``origin``: what
    the run went on from (``--resume``), which the card then names, so a
    fine-tuned policy says what it was tuned from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    card = {
        "encoder_version": ENCODER_VERSION,
        "maxima": {"tasks": cfg.max_tasks, "ready": cfg.max_ready, "devices": cfg.max_devices,
                   "edges": cfg.max_edges},
        "policy": cfg.policy, "config": asdict(cfg),
        "pools": sorted({k.pool for k in cfg.episode_kinds()}),
        "workloads": sorted({k.workload for k in cfg.episode_kinds()}),
        "validation_workloads": sorted({k.workload for k in cfg.validation_episode_kinds()}),
        "steps": steps, "evaluation": evaluation,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if origin is not None:
        card["resumed_from"] = origin
    card_path(path).write_text(json.dumps(card, indent=1))
    return path


class EpisodeMetricsCallback(BaseCallback):
    """Logs every finished training episode: ``charts/episode_avg_jct``,
    ``charts/episode_makespan`` and, where the reward has a baseline,
    ``charts/episode_jct_over_baseline``, each averaged over the episodes
    between two dumps of the logger.

    :param verbose: SB3's verbosity level (this callback prints nothing)
    """

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "avg_jct" in info:
                self.logger.record_mean("charts/episode_avg_jct", info["avg_jct"])
                self.logger.record_mean("charts/episode_makespan", info["makespan"])
                if "baseline_avg_jct" in info:
                    self.logger.record_mean("charts/episode_jct_over_baseline",
                                            info["avg_jct"] / info["baseline_avg_jct"])
        return True


@contextmanager
def rng_kept() -> Iterator[None]:
    """Run the block without moving the global random generators training
    draws from (torch's, NumPy's, Python's): what is validated, and how
    often, then never changes what training does next."""
    state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        yield
    random.setstate(state[0])
    np.random.set_state(state[1])


class ValidationCallback(BaseCallback):
    """Validates the policy as training starts, every ``eval_every`` steps
    and as it ends, logs ``charts/val_avg_jct`` and
    ``charts/val_ratio_to_best_heuristic``, and keeps the checkpoints in
    ``out_dir``: ``latest.zip`` (the policy validated last), ``best.zip``
    (the lowest ratio to the best heuristic so far) and, every
    ``checkpoint_every`` steps, ``step_N.zip``. Each card carries the last
    validation before it was saved (``latest.zip`` is saved to be validated,
    so its card has the one before; ``best.zip``'s has its own).

    With several environments the step count moves ``n_envs`` at a time: a
    step validates (or checkpoints) where the count has just passed a
    multiple of ``eval_every`` (of ``checkpoint_every``).

    Each validation is written to the logger at once (with whatever else is
    pending), so the next cannot overwrite it: at the step count as training
    starts and during it, one step past it as training ends (see the module
    docstring).

    :param validator: the fixed validation episodes and their heuristics' scores
    :param cfg: the run's config, written on every card
    :param out_dir: the folder of the checkpoints
    :param eval_every: steps between validations (0: only at the start and the end)
    :param checkpoint_every: steps between ``step_N`` checkpoints (0: none)
    :param verbose: SB3's verbosity level (this callback prints nothing)
    :param origin: what the run went on from, for the cards (:func:`save_checkpoint`)
    """

    def __init__(self, validator: Validator, cfg: TrainConfig, out_dir: Path,
                 eval_every: int, checkpoint_every: int, verbose: int = 0,
                 origin: dict[str, Any] | None = None) -> None:
        super().__init__(verbose)
        self.origin = origin
        self.validator = validator
        self.cfg = cfg
        self.out_dir = out_dir
        self.eval_every = eval_every
        self.checkpoint_every = checkpoint_every
        self.best_ratio = float("inf")
        #: the last validation (empty before the first)
        self.evaluation: dict[str, Any] = {}

    def validate(self, model, steps: int, at: int) -> dict[str, Any]:
        """Save ``model`` as ``latest.zip``, validate it, log the result at
        step ``at`` of the TensorBoard axis, and save it as ``best.zip`` where
        its ratio is the lowest so far; returns the validation (as the cards
        carry it).

        :param model: the policy to validate
        :param steps: the step count its cards carry
        :param at: the step it is logged at, past every step logged before
        """
        path = self.out_dir / "latest.zip"
        save_checkpoint(model, self.cfg, path, steps, self.evaluation, self.origin)
        with rng_kept():  # loading a policy draws its initial weights: not from training's RNG
            result = self.validator.evaluate(RLScheduler(path))
        ev = {"val_avg_jct": result["avg_jct"], "val_ratio_to_best_heuristic": result["ratio"],
              "kinds": result["kinds"], "validation_seeds": self.cfg.validation_seeds}
        # latest.zip's card says what latest.zip scored (it was saved to be validated)
        card_path(path).write_text(json.dumps({**json.loads(card_path(path).read_text()),
                                               "evaluation": ev}, indent=1))
        model.logger.record("charts/val_avg_jct", result["avg_jct"])
        model.logger.record("charts/val_ratio_to_best_heuristic", result["ratio"])
        for i, (kind, scored) in enumerate(zip(self.validator.kinds, result["kinds"])):
            # one curve per validation kind (per held-out family, where they are),
            # numbered: two kinds may differ only in load, perturbations or estimates
            model.logger.record(f"charts/val_ratio_to_best_heuristic/{i}_{kind.tag}",
                                scored["ratio"])
        model.logger.dump(at)
        if result["ratio"] < self.best_ratio:
            self.best_ratio = result["ratio"]
            save_checkpoint(model, self.cfg, self.out_dir / "best.zip", steps, ev, self.origin)
        self.evaluation = ev
        return ev

    def _on_training_start(self) -> None:
        # the policy as cloned (or resumed) is step 0 of this run's cards
        self.validate(self.model, 0, at=self.num_timesteps)

    def _on_step(self) -> bool:
        n, n_envs = self.num_timesteps, self.training_env.num_envs
        if self.eval_every and n % self.eval_every < n_envs:
            self.validate(self.model, n, at=n)
        if self.checkpoint_every and n % self.checkpoint_every < n_envs:
            save_checkpoint(self.model, self.cfg, self.out_dir / f"step_{n}.zip", n,
                            self.evaluation, self.origin)
        return True

    def _on_training_end(self) -> None:
        # step n already has the last rollout's points; the update after it is new
        n = self.model.num_timesteps
        self.validate(self.model, n, at=n + 1)


def train(cfg: TrainConfig, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the whole recipe; returns the final evaluation."""
    from stable_baselines3.common.logger import configure

    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.checkpoints_dir) / cfg.name
    run_dir = new_run_dir(cfg)
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    kinds = cfg.episode_kinds()
    fns = [partial(_monitored_env, cfg, kinds[i % len(kinds)], cfg.seed + i)
           for i in range(cfg.n_envs)]
    vec = (SubprocVecEnv if cfg.n_envs > 1 else DummyVecEnv)(fns)
    if resume:
        from sb3_contrib import MaskablePPO

        resumed = RLScheduler(resume)  # checks the card before anything is trained
        if resumed.encoder_version != ENCODER_VERSION:
            raise InputError(str(resume), f"was trained with encoder version "
                             f"{resumed.encoder_version}; training goes on only in this "
                             f"rlsched's version {ENCODER_VERSION}: train anew")
        model = MaskablePPO.load(resume, env=vec, device="cpu",
                                 tensorboard_log=str(Path(cfg.runs_dir)))
        card = resumed.card
        trained, validated = trained_workloads(str(resume))
        origin: dict[str, Any] | None = {
            "checkpoint": str(resume), "config": card.get("config", {}).get("name"),
            "saved": card.get("saved"), "steps": card.get("steps"),
            # what it trained and was chosen on, its own origins' included:
            # the tuned policy has seen all of it (evaluate --holdout-report)
            "workloads": trained, "validation_workloads": validated,
            "resumed_from": card.get("resumed_from")}
    else:
        model = build_model(cfg, vec, str(Path(cfg.runs_dir)))
        origin = None
    logger = configure(str(run_dir), ["tensorboard", "csv"])
    model.set_logger(logger)
    logger.record("config", _config_text(cfg), exclude=("csv",))
    validation = ValidationCallback(Validator(cfg), cfg, out_dir, cfg.eval_every,
                                    cfg.checkpoint_every, origin=origin)
    if not resume and cfg.bc_episodes > 0:
        behaviour_cloning(model, cfg, logger, progress)

    model.learn(cfg.total_steps, callback=[EpisodeMetricsCallback(), validation],
                progress_bar=progress, reset_num_timesteps=not resume)
    final = validation.evaluation
    ppo_end = model.num_timesteps
    save_checkpoint(model, cfg, out_dir / "final.zip", ppo_end, final, origin)
    if cfg.anchor_episodes > 0 and any(k.anchor for k in kinds):
        from sb3_contrib import MaskablePPO

        best = MaskablePPO.load(str(out_dir / "best.zip"), env=vec, device="cpu")
        best.set_logger(logger)
        # after the validation that ended PPO, at ppo_end + 1
        anchor(best, cfg, logger, step0=ppo_end + 2)
        model = best
        # competes for best.zip like any checkpoint
        final = validation.validate(model, model.num_timesteps,
                                    at=ppo_end + 2 + cfg.anchor_epochs)
        save_checkpoint(model, cfg, out_dir / "anchored.zip", model.num_timesteps, final,
                        origin)
    vec.close()
    logger.close()  # flushes progress.csv and the event file, and closes them
    # the last validation is the last policy's (anchored.zip, else final.zip);
    # best.zip's is beside it, as the one to use
    return {**final, "of": "anchored.zip" if cfg.anchor_episodes > 0 and any(
                k.anchor for k in kinds) else "final.zip",
            "best_val_ratio_to_best_heuristic": validation.best_ratio, "run_dir": str(run_dir)}


def new_run_dir(cfg: TrainConfig) -> Path:
    """``runs/NAME/YYYYMMDD-HHMMSS/``: each training run logs to a folder of
    its own, so TensorBoard shows a rerun beside the last one instead of
    drawing both into one tangle of curves."""
    import time

    parent = Path(cfg.runs_dir) / cfg.name
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir, n = parent / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = parent / f"{stamp}-{n}"
    return run_dir


def _config_text(cfg: TrainConfig) -> str:
    """The config as a markdown table (SB3 writes ``str`` values as TensorBoard text)."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in asdict(cfg).items())
    return "| setting | value |\n|---|---|\n" + rows
