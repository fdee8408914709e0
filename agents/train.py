"""Training: imitation of a teacher, then MaskablePPO, watched in TensorBoard.

Reads top to bottom: load the config, build the environments, warm-start the
policy by behaviour cloning of the teacher heuristic, run PPO with a callback
that logs episode metrics and validates every K steps, save checkpoints with
their cards.

TensorBoard scalars (``runs/NAME/``): ``charts/episode_avg_jct``,
``charts/episode_makespan`` (training episodes), ``charts/val_avg_jct`` and
``charts/val_ratio_to_best_heuristic`` (the fixed validation episodes; below
1 means better than every heuristic), ``charts/bc_loss``; ``losses/`` and
``train/`` as SB3 logs them; the config as text.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from agents.gnn import GnnMaskablePolicy
from agents.scheduler import RLScheduler, card_path
from envs.dag_env import DagSchedulingEnv
from envs.encoder import ENCODER_VERSION
from rlsched.errors import InputError
from rlsched.evaluate import episodes, run_episode
from rlsched.metrics import measure
from rlsched.perturbations import Perturbations
from rlsched.schedulers import make_scheduler
from rlsched.sources.specs import resolve_pool


@dataclass
class TrainConfig:
    """Everything a training run depends on (with its seed, it reproduces it)."""

    name: str = "default"
    workload: str = "wfcommons:workloads/wfcommons"
    pool: str = "preset:workstation-4"
    arrivals: str = "poisson"
    load: float = 0.85
    perturb: str = "all"
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
    teacher: str = "tetris"
    bc_episodes: int = 20
    bc_epochs: int = 8
    validation_seeds: list[int] = field(default_factory=lambda: [500, 501])
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
        return cls(**doc)


def make_env(cfg: TrainConfig, seed: int | None = None) -> DagSchedulingEnv:
    return DagSchedulingEnv(cfg.workload, cfg.pool, arrivals=cfg.arrivals, load=cfg.load,
                            reward=cfg.reward, perturb=cfg.perturb, max_tasks=cfg.max_tasks,
                            max_ready=cfg.max_ready, max_devices=cfg.max_devices,
                            max_edges=cfg.max_edges, seed=seed)


def build_model(cfg: TrainConfig, env, tensorboard_log: str | None):
    from sb3_contrib import MaskablePPO

    if cfg.policy == "gnn":
        policy, kwargs = GnnMaskablePolicy, {"hidden": cfg.hidden, "rounds": cfg.rounds,
                                             "n_ready": cfg.max_ready}
    elif cfg.policy == "mlp":
        policy, kwargs = "MultiInputPolicy", {}
    else:
        raise InputError("policy", f"unknown policy '{cfg.policy}' (use gnn or mlp)")
    return MaskablePPO(policy, env, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
                       batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma,
                       gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef,
                       clip_range=cfg.clip_range, policy_kwargs=kwargs, seed=cfg.seed,
                       tensorboard_log=tensorboard_log, device="cpu", verbose=0)


def behaviour_cloning(model, cfg: TrainConfig, writer=None) -> list[float]:
    """Warm-start: fit the policy to the teacher's choices on training episodes.

    The teacher runs inside the environment, one placement per step; its
    choices that fall outside the ready slots are stepped but not learned.
    """
    env = make_env(cfg)
    obs_list, mask_list, actions = [], [], []
    teacher = make_scheduler(cfg.teacher, search_evaluations=500)
    for ep in range(cfg.bc_episodes):
        obs, _ = env.reset(seed=cfg.seed * 1000 + ep)
        teacher.reset(env.sim.seed)
        done = False
        while not done:
            placements = teacher.decide(env.view)
            mask = env.action_masks()
            try:
                action = env.action_for(placements[0] if placements else None)
                ok = bool(mask[action])
            except ValueError:
                ok = False
            if ok:
                obs_list.append(obs)
                mask_list.append(mask)
                actions.append(action)
            else:
                action = int(np.flatnonzero(mask)[0])
            obs, _, done, _, _ = env.step(action)
    policy = model.policy
    keys = obs_list[0].keys()
    data = {k: torch.as_tensor(np.stack([o[k] for o in obs_list])) for k in keys}
    masks = np.stack(mask_list)
    acts = torch.as_tensor(actions)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    for epoch in range(cfg.bc_epochs):
        order = rng.permutation(len(actions))
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
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
            writer.dump(epoch)
    return losses


class Validator:
    """Average JCT of a policy on fixed validation episodes, against the heuristics."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.pool = resolve_pool(cfg.pool)
        self.plan = episodes([cfg.workload], self.pool, cfg.arrivals, cfg.load,
                             list(cfg.validation_seeds))
        self.perturb = Perturbations.parse(cfg.perturb)
        self.heuristics = {h: self.score(make_scheduler(h)) for h in cfg.heuristics}
        self.best_heuristic = min(self.heuristics.values())

    def score(self, scheduler) -> float:
        return statistics.fmean(
            measure(run_episode(inst, self.pool, scheduler, seed, self.perturb)).avg_jct
            for _, inst, seed in self.plan)


def save_checkpoint(model, cfg: TrainConfig, path: Path, steps: int,
                    evaluation: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    card = {
        "encoder_version": ENCODER_VERSION,
        "maxima": {"tasks": cfg.max_tasks, "ready": cfg.max_ready, "devices": cfg.max_devices,
                   "edges": cfg.max_edges},
        "policy": cfg.policy, "config": asdict(cfg), "pools": [cfg.pool],
        "workloads": [cfg.workload], "steps": steps, "evaluation": evaluation,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    card_path(path).write_text(json.dumps(card, indent=1))
    return path


def train(cfg: TrainConfig, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the whole recipe; returns the final evaluation."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.checkpoints_dir) / cfg.name
    run_dir = Path(cfg.runs_dir) / cfg.name
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    vec = make_vec_env(lambda: make_env(cfg), n_envs=cfg.n_envs, seed=cfg.seed,
                       vec_env_cls=SubprocVecEnv if cfg.n_envs > 1 else DummyVecEnv)
    if resume:
        from sb3_contrib import MaskablePPO

        RLScheduler(resume)  # checks the card before anything is trained
        model = MaskablePPO.load(resume, env=vec, device="cpu",
                                 tensorboard_log=str(Path(cfg.runs_dir)))
    else:
        model = build_model(cfg, vec, str(Path(cfg.runs_dir)))
    logger = configure(str(run_dir), ["tensorboard", "csv"])
    model.set_logger(logger)
    logger.record("config", _config_text(cfg), exclude=("csv",))
    validator = Validator(cfg)
    if not resume and cfg.bc_episodes > 0:
        behaviour_cloning(model, cfg, logger)

    state = {"best": float("inf"), "evaluation": {}}

    def validate(steps: int) -> dict[str, Any]:
        path = out_dir / "latest.zip"
        save_checkpoint(model, cfg, path, steps, state["evaluation"])
        jct = validator.score(RLScheduler(path))
        ev = {"val_avg_jct": jct, "val_ratio_to_best_heuristic": jct / validator.best_heuristic,
              "heuristics_avg_jct": validator.heuristics, "validation_seeds": cfg.validation_seeds}
        model.logger.record("charts/val_avg_jct", jct)
        model.logger.record("charts/val_ratio_to_best_heuristic", ev["val_ratio_to_best_heuristic"])
        if jct < state["best"]:
            state["best"] = jct
            save_checkpoint(model, cfg, out_dir / "best.zip", steps, ev)
        state["evaluation"] = ev
        return ev

    class Watch(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "avg_jct" in info:
                    self.logger.record_mean("charts/episode_avg_jct", info["avg_jct"])
                    self.logger.record_mean("charts/episode_makespan", info["makespan"])
            n = self.num_timesteps
            if cfg.eval_every and n % cfg.eval_every < cfg.n_envs:
                validate(n)
            if cfg.checkpoint_every and n % cfg.checkpoint_every < cfg.n_envs:
                save_checkpoint(self.model, cfg, out_dir / f"step_{n}.zip", n, state["evaluation"])
            return True

    validate(0)
    model.learn(cfg.total_steps, callback=Watch(), progress_bar=progress,
                reset_num_timesteps=not resume)
    final = validate(model.num_timesteps)
    save_checkpoint(model, cfg, out_dir / "final.zip", model.num_timesteps, final)
    logger.dump(model.num_timesteps)
    vec.close()
    return final


def _config_text(cfg: TrainConfig) -> str:
    """The config as a markdown table (SB3 writes ``str`` values as TensorBoard text)."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in asdict(cfg).items())
    return "| setting | value |\n|---|---|\n" + rows
