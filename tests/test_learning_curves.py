"""TensorBoard's learning curves: one x axis for the whole run (cloning,
DAgger, PPO, anchoring), on which no point overwrites another.

TensorBoard keeps only the last point written at a step, and drops every
later point when a tag's step goes back, so the tests ask for strictly
increasing steps in every tag, not only in the validation curves.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agents.train import TrainConfig, train

VALIDATION_TAGS = ("charts/val_ratio_to_best_heuristic", "charts/val_avg_jct")


@pytest.fixture
def run(quick_run):
    return quick_run


def scalars(run_dir: str) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def card(cfg: TrainConfig, folder, name: str) -> dict:
    return json.loads((folder / cfg.name / f"{name}.json").read_text())


def ppo_validation_steps(cfg: TrainConfig, start: int, end: int) -> list[int]:
    """Where PPO from step ``start`` to ``end`` validates: as it starts, each
    time the count passes a multiple of ``eval_every``, and one step past
    its end (its last update)."""
    every = [n for n in range(start + cfg.n_envs, end + 1, cfg.n_envs)
             if cfg.eval_every and n % cfg.eval_every < cfg.n_envs]
    return [start, *every, end + 1]


def ppo_end(cfg: TrainConfig, start: int = 0) -> int:
    rollout = cfg.n_steps * cfg.n_envs
    return start + -(-cfg.total_steps // rollout) * rollout


def test_every_validation_is_a_point_at_a_later_step(run):
    cfg, tmp, final = run
    end = ppo_end(cfg)
    assert card(cfg, tmp / "checkpoints", "final")["steps"] == end
    # the anchored policy's validation follows the anchoring epochs
    expected = [*ppo_validation_steps(cfg, 0, end), end + 2 + cfg.anchor_epochs]
    curves = scalars(final["run_dir"])
    for tag in VALIDATION_TAGS:
        assert [p.step for p in curves[tag]] == expected, tag
    # each point is the validation made there, not a later one written over it
    ratio = {p.step: p.value for p in curves["charts/val_ratio_to_best_heuristic"]}
    for name, step in [(f"step_{n}", n) for n in range(cfg.checkpoint_every, end + 1,
                                                     cfg.checkpoint_every)] + \
                      [("final", end + 1), ("anchored", expected[-1])]:
        logged = card(cfg, tmp / "checkpoints", name)["evaluation"]["val_ratio_to_best_heuristic"]
        assert ratio[step] == pytest.approx(logged, rel=1e-6), name  # TensorBoard keeps float32
    assert final["val_ratio_to_best_heuristic"] == pytest.approx(ratio[expected[-1]], rel=1e-6)


def test_no_tag_ever_steps_back_or_repeats_a_step(run):
    cfg, _, final = run
    curves = scalars(final["run_dir"])
    assert any(tag.startswith("train/") for tag in curves)
    for tag, points in curves.items():
        steps = [p.step for p in points]
        assert all(a < b for a, b in zip(steps, steps[1:])), (tag, steps)


def test_imitation_comes_before_ppo_and_anchoring_after(run):
    cfg, _, final = run
    end = ppo_end(cfg)
    imitation = cfg.bc_epochs + cfg.dagger_rounds * max(1, cfg.bc_epochs // 2)
    bc = [p.step for p in scalars(final["run_dir"])["charts/bc_loss"]]
    # one point per epoch: cloning and DAgger up to -1, anchoring past PPO's end
    assert bc == [*range(-imitation, 0), *range(end + 2, end + 2 + cfg.anchor_epochs)]


def test_a_resumed_run_continues_the_axis(run, tmp_path):
    cfg, tmp, _ = run
    start = card(cfg, tmp / "checkpoints", "final")["steps"]
    more = replace(cfg, total_steps=cfg.n_steps, anchor_episodes=0,
                   checkpoints_dir=str(tmp_path / "checkpoints"))
    resumed = train(more, resume=str(tmp / "checkpoints" / cfg.name / "final.zip"),
                    progress=False)
    curves = scalars(resumed["run_dir"])
    expected = ppo_validation_steps(more, start, ppo_end(more, start))
    for tag in VALIDATION_TAGS:
        assert [p.step for p in curves[tag]] == expected, tag
    assert min(p.step for points in curves.values() for p in points) >= start
    # its cards name what it went on from; the first run's name nothing
    origin = card(more, tmp_path / "checkpoints", "final")["resumed_from"]
    assert origin["checkpoint"] == str(tmp / "checkpoints" / cfg.name / "final.zip")
    assert (origin["config"], origin["steps"]) == (cfg.name, start)
    assert origin["workloads"] == sorted({k.workload for k in cfg.episode_kinds()})
    assert "resumed_from" not in card(cfg, tmp / "checkpoints", "final")
