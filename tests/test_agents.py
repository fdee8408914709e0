"""The learned policy: trains end to end on a tiny budget, is logged, saved,
reloaded identically, and runs as a scheduler on pools of other sizes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

from agents.gnn import GnnMaskablePolicy
from agents.scheduler import RLScheduler
from agents.train import TrainConfig, make_env
from rlsched.evaluation.evaluate import evaluate
from tests.helpers import ROOT


@pytest.fixture
def trained(quick_run):
    return quick_run


def test_the_quick_config_trains_logs_and_saves(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, tmp, final = trained
    assert final["val_avg_jct"] > 0 and final["val_ratio_to_best_heuristic"] > 0
    (run,) = (tmp / "runs" / cfg.name).iterdir()  # one run, in a folder of its own
    assert final["run_dir"] == str(run)
    events = EventAccumulator(str(run))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"charts/val_avg_jct", "charts/val_ratio_to_best_heuristic",
            "charts/bc_loss", "charts/dagger_ratio", "charts/episode_jct_over_baseline"} <= scalars
    # validated on the kinds its config names: those it trained on and one held out,
    # each with a curve of its own
    validated = cfg.validation_episode_kinds()
    assert [k["kind"] for k in final["kinds"]] == [k.label for k in validated]
    assert "synthetic:pipeline?jobs=3" not in {k.workload for k in cfg.episode_kinds()}
    assert {f"charts/val_ratio_to_best_heuristic/{i}_{k.tag}"
            for i, k in enumerate(validated)} <= scalars
    assert "charts/val_ratio_to_best_heuristic/2_synthetic_pipeline_jobs_3_on_preset_" \
        "workstation_4_poisson" in scalars
    assert any(t.startswith("train/") for t in scalars)
    for name in ("best", "final", "latest", "anchored"):
        card = json.loads((tmp / "checkpoints" / cfg.name / f"{name}.json").read_text())
        assert card["maxima"] == {"tasks": 64, "ready": 16, "devices": 8, "edges": 256}
        assert card["config"]["name"] == "quick" and card["encoder_version"] >= 1
        assert card["workloads"] == ["stg:workloads/stg/50/rand0000.stg",
                                     "synthetic:mixed?jobs=4"]
        assert "synthetic:pipeline?jobs=3" in card["validation_workloads"]


def test_best_zip_holds_the_lowest_ratio_validated(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, tmp, final = trained
    events = EventAccumulator(final["run_dir"])
    events.Reload()
    logged = [e.value for e in events.Scalars("charts/val_ratio_to_best_heuristic")]
    folder = tmp / "checkpoints" / cfg.name
    cards = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    # a step_N checkpoint every checkpoint_every steps
    assert {f"step_{n}" for n in range(cfg.checkpoint_every, cfg.total_steps + 1,
                                       cfg.checkpoint_every)} <= set(cards)
    best = cards["best"]["evaluation"]["val_ratio_to_best_heuristic"]
    others = [c["evaluation"]["val_ratio_to_best_heuristic"] for c in cards.values()
              if c["evaluation"]]
    assert all(best <= r for r in others)
    # the run's summary names whose validation it is, and gives best.zip's beside it
    assert final["of"] == "anchored.zip" and final["best_val_ratio_to_best_heuristic"] == best
    # latest.zip is the last policy validated, and its card carries that validation
    last = final["val_ratio_to_best_heuristic"]
    assert cards["latest"]["evaluation"]["val_ratio_to_best_heuristic"] == last
    assert cards["anchored"]["evaluation"]["val_ratio_to_best_heuristic"] == last
    assert all(best <= r * (1 + 1e-6) for r in logged)  # TensorBoard keeps float32


def test_a_reloaded_policy_acts_identically(trained):
    cfg, tmp, _ = trained
    path = tmp / "checkpoints" / cfg.name / "final.zip"
    env = make_env(cfg)
    obs, _ = env.reset(seed=9)
    mask = env.action_masks()
    a = MaskablePPO.load(str(path), device="cpu")
    b = MaskablePPO.load(str(path), device="cpu")
    for model in (a, b):
        assert isinstance(model.policy, GnnMaskablePolicy)
    obs_t, _ = a.policy.obs_to_tensor(obs)
    with torch.no_grad():
        pa = a.policy.get_distribution(obs_t, action_masks=mask).distribution.probs
        pb = b.policy.get_distribution(obs_t, action_masks=mask).distribution.probs
    assert torch.equal(pa, pb)
    assert a.predict(obs, action_masks=mask, deterministic=True)[0] == \
        b.predict(obs, action_masks=mask, deterministic=True)[0]


def test_a_policy_loaded_to_decide_has_the_saved_weights_and_builds_no_optimizer(trained):
    # torch's first optimizer imports its compiler stack (seconds, in every
    # evaluate worker and the daemon); a scheduler never steps one
    cfg, tmp, _ = trained
    path = tmp / "checkpoints" / cfg.name / "final.zip"
    sched = RLScheduler(path)
    saved = MaskablePPO.load(str(path), device="cpu").policy.state_dict()
    loaded = sched.model.policy.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert not isinstance(sched.model.policy.optimizer, torch.optim.Optimizer)
    with pytest.raises(RuntimeError, match="loaded to decide"):
        sched.model.policy.optimizer.step()
    with pytest.raises(RuntimeError, match="loaded to decide"):  # nor saved with its weights
        sched.model.save(tmp / "resaved.zip")
    probe = ("import sys; from agents.scheduler import RLScheduler; "
             f"RLScheduler({str(path)!r}); print('torch._dynamo' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("pool", ["identical:2", "preset:workstation-4", "identical:8"])
def test_one_set_of_weights_schedules_pools_of_any_size(trained, pool):
    cfg, tmp, _ = trained
    spec = f"rl:{tmp / 'checkpoints' / cfg.name / 'final.zip'}"
    import agents  # noqa: F401  registers rl:

    ev = evaluate(["synthetic:mixed?jobs=3"], pool, [spec, "fifo"], arrivals="poisson",
                  perturb="all")
    rl = next(r for r in ev.results if r.scheduler == spec)
    assert rl.metrics.makespan >= rl.metrics.lower_bound - 1e-6 and rl.decisions > 0


def test_checkpoints_that_do_not_match_fail_with_one_line(trained, tmp_path):
    cfg, tmp, _ = trained
    src = tmp / "checkpoints" / cfg.name / "final.zip"
    stale = tmp_path / "stale.zip"
    shutil.copy(src, stale)
    card = json.loads(src.with_suffix(".json").read_text())
    card["encoder_version"] = 0
    stale.with_suffix(".json").write_text(json.dumps(card))
    nocard = tmp_path / "nocard.zip"
    shutil.copy(src, nocard)
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"not a zip")
    corrupt.with_suffix(".json").write_text(src.with_suffix(".json").read_text())
    # a version this encoder reads, but not the one the network was trained with
    misversioned = tmp_path / "misversioned.zip"
    shutil.copy(src, misversioned)
    misversioned.with_suffix(".json").write_text(json.dumps({**card, "encoder_version": 9}))
    # with workers, a policy is loaded in them alone: what only loading finds
    # comes back from a worker as the same line
    for path, needle, workers in (
            (stale, "encoder version 0", "1"), (nocard, "has no card", "1"),
            (corrupt, "cannot load the checkpoint", "1"),
            (misversioned, "belongs to another checkpoint", "1"),
            (corrupt, "cannot load the checkpoint", "2"),
            (misversioned, "belongs to another checkpoint", "2")):
        proc = subprocess.run(
            [sys.executable, "-m", "rlsched", "evaluate", "--workload", "synthetic:sweep",
             "--pool", "identical:2", "--scheduler", f"fifo,rl:{path}", "--workers", workers],
            capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and str(path) in lines[0], proc.stderr


def test_bench_policy_prints_latencies(trained):
    cfg, tmp, _ = trained
    from agents.decision_latency import bench_policy

    out = bench_policy(tmp / "checkpoints" / cfg.name / "final.zip", decisions=20)
    assert out["tasks"] == 100 and out["devices"] == 8
    assert 0 < out["median_ms"] <= out["p99_ms"]


def test_the_scheduler_only_proposes_valid_placements(trained):
    cfg, tmp, _ = trained
    sched = RLScheduler(tmp / "checkpoints" / cfg.name / "final.zip", deterministic=False)
    env = make_env(cfg)
    env.reset(seed=4)
    for _ in range(80):
        if env.view is None:
            break
        placements = sched.decide(env.view)
        action = env.action_for(placements[0] if placements else None)
        assert env.action_masks()[action]
        env.step(action)
    assert np.isfinite(env.sim.now)


@pytest.mark.parametrize("setting", ["kinds", "validation_kinds"])
def test_a_config_with_an_unknown_kind_key_is_one_line(tmp_path, setting):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: bad\n{setting}:\n  - {{workload: 'synthetic:sweep', pol: 'identical:2'}}\n")
    proc = subprocess.run([sys.executable, "-m", "rlsched", "train", "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "pol" in lines[0]
    assert f"{setting}:" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_each_kind_is_validated_on_other_instances_for_each_seed():
    from agents.train import Validator

    cfg = TrainConfig(kinds=[{"workload": f"stg:{ROOT / 'workloads' / 'stg' / '50'}",
                              "pool": "identical:2", "arrivals": "batch", "perturb": "none",
                              "teacher": "cp"}],
                      validation_seeds=[500, 501], validation_instances=3, heuristics=["fifo"])
    plan = Validator(cfg).plans[0][1]
    names = [inst.name for _, inst, _ in plan]
    assert len(names) == 6 and len(set(names)) == 6


def test_the_lookahead_teacher_labels_share_unless_a_play_out_finds_better():
    """``lookahead:share`` labels the environment's states: with a margin no
    deviation can clear, it is share itself; without one it departs from
    share only where a play-out of the same future ends with less total JCT."""
    from agents.train import LookaheadTeacher
    from rlsched.lookahead import play_out
    from rlsched.schedulers import make_scheduler
    from rlsched.view import Placement

    cfg = TrainConfig.from_yaml(ROOT / "configs" / "quick.yaml")
    kind = replace(cfg.episode_kinds()[0], teacher="lookahead:share")
    env = make_env(cfg, kind=kind)
    env.reset(seed=4)
    strict = LookaheadTeacher("lookahead:share", margin=1.0)
    free = LookaheadTeacher("lookahead:share")
    share, departed, devices = make_scheduler("share"), 0, env.maxima.devices
    while env.view is not None:
        mask, advice = env.action_masks(), env.advice[0]
        assert strict.action(env, mask) == env.action_for(advice)
        label = free.action(env, mask)
        if label != env.action_for(advice):
            departed += 1
            chosen = [] if label == mask.size - 1 else [
                Placement(int(env._enc.window[label // devices]), label % devices)]
            assert play_out(env.sim, chosen, share) < \
                play_out(env.sim, [] if advice is None else [advice], share)
        env.step(label)
    assert departed > 0


def test_the_most_likely_action_is_the_one_sb3_would_take(trained):
    # the scheduler takes the argmax from the masked logits itself: the same
    # action as SB3's masked distribution, at every decision of an episode
    cfg, tmp, _ = trained
    sched = RLScheduler(tmp / "checkpoints" / cfg.name / "final.zip")
    policy = sched.model.policy
    env = make_env(cfg)
    obs, _ = env.reset(seed=5)
    compared = 0
    while env.view is not None and compared < 60:
        mask = env.action_masks()
        with torch.inference_mode():
            tensor, _ = policy.obs_to_tensor(obs)
            expected = int(policy.get_distribution(tensor, action_masks=mask)
                           .get_actions(deterministic=True).reshape(-1)[0])
        assert sched._act(obs, mask) == expected
        compared += 1
        obs, *_ = env.step(expected)
    assert compared >= 10


def test_where_the_network_cannot_be_traced_it_decides_the_same_eagerly(trained, monkeypatch):
    # the decision's network runs as one graph, traced as the checkpoint
    # loads; a torch without tracing (it is deprecated) leaves the module
    # as it is, with the same actions
    cfg, tmp, _ = trained
    path = tmp / "checkpoints" / cfg.name / "final.zip"

    def no_tracing(*args, **kwargs):
        raise RuntimeError("tracing is not available")

    traced = RLScheduler(path)
    with monkeypatch.context() as patch:
        patch.setattr(torch.jit, "trace", no_tracing)
        eager = RLScheduler(path)
    assert isinstance(traced._traced, torch.jit.ScriptModule)
    assert eager._traced is not None and not isinstance(eager._traced, torch.jit.ScriptModule)
    env = make_env(cfg)
    obs, _ = env.reset(seed=6)
    compared = 0
    while env.view is not None and compared < 40:
        mask = env.action_masks()
        action = traced._act(obs, mask)
        assert eager._act(obs, mask) == action
        compared += 1
        obs, *_ = env.step(action)
    assert compared >= 10


def test_a_decision_runs_on_one_torch_thread_and_gives_the_callers_count_back(trained,
                                                                             monkeypatch):
    # as training and bench policy run it; more threads only hand off
    cfg, tmp, _ = trained
    sched = RLScheduler(tmp / "checkpoints" / cfg.name / "final.zip")
    env = make_env(cfg)
    obs, _ = env.reset(seed=5)
    seen = []
    inner = sched._act_on_one_thread
    monkeypatch.setattr(sched, "_act_on_one_thread",
                        lambda o, m: seen.append(torch.get_num_threads()) or inner(o, m))
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        sched._act(obs, env.action_masks())
        assert seen == [1] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_privileged_teacher_driving_the_environment_is_its_heuristic_told_the_truth():
    """``oracle:share`` as a teacher labels each state with what share would
    do there if it knew every true runtime: followed step by step, it makes
    exactly the schedule of ``oracle:share`` (share on an exact-estimate
    simulator), while the observation keeps holding the predictions."""
    from agents.train import PrivilegedTeacher
    from rlsched.evaluation.evaluate import run_episode
    from rlsched.schedulers import make_scheduler

    cfg = TrainConfig.from_yaml(ROOT / "configs" / "quick.yaml")
    kind = replace(cfg.episode_kinds()[0], teacher="oracle:share")
    env = make_env(cfg, kind=kind)
    env.reset(seed=3)
    teacher = PrivilegedTeacher("oracle:share")
    teacher.reset(env.sim.seed)
    told_estimates = 0
    while env.view is not None:
        told_estimates += list(env.view.predicted) != list(env.sim.work)
        label = teacher.action(env, env.action_masks())
        assert label is not None
        env.step(label)
    assert told_estimates > 0
    oracle = run_episode(env.instance, env.pool, make_scheduler("oracle:share"), env.sim.seed,
                         env.perturbations, env.estimates)
    assert env.sim.result().trace == oracle.trace


def test_a_teacher_that_is_no_scheduler_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nkinds:\n  - {workload: 'synthetic:sweep', pool: 'identical:2', "
                   "teacher: 'oracle:fifo'}\n")
    proc = subprocess.run([sys.executable, "-m", "rlsched", "train", "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "teacher" in lines[0]


def test_a_separate_critic_leaves_the_actors_features_to_the_actor():
    """With ``separate_critic``, the value loss reaches only the critic's own
    graph network: the features the cloned actor reads do not move with it."""
    from agents.train import build_model

    cfg = replace(TrainConfig.from_yaml(ROOT / "configs" / "quick.yaml"), separate_critic=True)
    env = make_env(cfg)
    obs, _ = env.reset(seed=0)
    policy = build_model(cfg, env, None).policy
    batch = {k: torch.as_tensor(v).unsqueeze(0) for k, v in obs.items()}
    policy.predict_values(batch).sum().backward()
    actor = list(policy.pi_features_extractor.parameters())
    critic = list(policy.vf_features_extractor.parameters())
    assert all(p.grad is None or not p.grad.any() for p in actor)
    assert any(p.grad is not None and p.grad.any() for p in critic)


def test_a_list_of_reward_baselines_names_each_kinds_teacher_and_the_others_once(tmp_path):
    from agents.train import reward_baseline

    cfg = TrainConfig(reward_baseline=["teacher", "sjf"],
                      kinds=[{"teacher": "share"}, {"teacher": "sjf"}, {"teacher": "oracle:cp"}])
    assert [reward_baseline(cfg, k) for k in cfg.episode_kinds()] == \
        [["share", "sjf"], ["sjf"], ["cp", "sjf"]]
    assert reward_baseline(replace(cfg, reward_baseline="none"), cfg.episode_kinds()[0]) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nreward_baseline: [teacher, shrae]\n")
    proc = subprocess.run([sys.executable, "-m", "rlsched", "train", "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "reward_baseline" in lines[0]


def test_how_often_training_validates_never_changes_what_it_trains(tmp_path):
    # validating loads the policy, and building a policy draws initial weights
    # from torch's RNG: unguarded, each validation moved PPO's sampling after it
    from agents.train import train

    base = TrainConfig.from_yaml(ROOT / "configs" / "quick.yaml")
    weights = []
    for eval_every in (0, 256):
        cfg = replace(base, eval_every=eval_every, runs_dir=str(tmp_path / f"runs{eval_every}"),
                      checkpoints_dir=str(tmp_path / f"ck{eval_every}"))
        train(cfg, progress=False)
        weights.append(MaskablePPO.load(tmp_path / f"ck{eval_every}" / cfg.name / "final.zip",
                                        device="cpu").policy.state_dict())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_validate_compares_checkpoints_and_heuristics_on_seeds_of_ones_choosing(trained):
    cfg, tmp, _ = trained
    final = tmp / "checkpoints" / cfg.name / "final.zip"
    runs = sorted((ROOT / "runs").glob("*/*"))
    proc = subprocess.run([sys.executable, "-m", "rlsched", "train", "--config",
                           str(ROOT / "configs" / "quick.yaml"), "--validate",
                           f"rl:{final},sjf,fifo", "--validation-seeds", "600-601"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [r["scheduler"] for r in out] == [f"rl:{final}", "sjf", "fifo"]
    n_kinds = len(cfg.validation_episode_kinds())
    for r in out:
        assert r["validation_seeds"] == [600, 601] and len(r["kinds"]) == n_kinds
        assert r["ratio"] == pytest.approx(sum(k["ratio"] for k in r["kinds"]) / n_kinds)
    # the heuristics are the config's: the better of them is the best, kind by kind
    sjf, fifo = out[1]["kinds"], out[2]["kinds"]
    assert all(min(a["ratio"], b["ratio"]) == pytest.approx(1.0) for a, b in zip(sjf, fifo))
    assert sorted((ROOT / "runs").glob("*/*")) == runs  # validating trains nothing


@pytest.mark.parametrize("args, says", [
    (["--validate", "sjf", "--validation-seeds", "6o0"], "--validation-seeds: '6o0' is not a seed"),
    (["--validation-seeds", "600"], "--validation-seeds: is for --validate"),
    (["--validate", "shrae"], "--validate: unknown scheduler 'shrae'"),
])
def test_validate_refuses_bad_seeds_and_names_in_one_line(args, says):
    proc = subprocess.run([sys.executable, "-m", "rlsched", "train", "--config",
                           str(ROOT / "configs" / "quick.yaml"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]


def test_a_policy_of_an_earlier_encoder_version_sees_what_it_trained_on(trained, tmp_path):
    """A new encoder version only adds task columns: a checkpoint of an
    earlier version is handed the observation without them (the shipped
    policy's pinned traces check that its schedule is unchanged), and its
    network gets the width it was built for."""
    from envs.encoder import (
        ADDED_TASK_COLUMNS,
        ENCODER_VERSION,
        READABLE_VERSIONS,
        TASK_FEATURES,
        as_version,
    )

    assert ENCODER_VERSION == READABLE_VERSIONS[-1]
    env = make_env(trained[0])
    obs, _ = env.reset(seed=0)
    assert as_version(obs, ENCODER_VERSION) is obs
    for version in READABLE_VERSIONS[:-1]:
        older = as_version(obs, version)
        added = [c for v, cs in ADDED_TASK_COLUMNS.items() if v > version for c in cs]
        kept = [c for c in range(TASK_FEATURES) if c not in added]
        assert older["tasks"].shape[1] == TASK_FEATURES - len(added)
        assert np.array_equal(older["tasks"], obs["tasks"][:, kept])
        assert all(older[k] is obs[k] for k in obs if k != "tasks")
    with pytest.raises(ValueError, match="cannot be read"):
        as_version(obs, READABLE_VERSIONS[0] - 1)
    shipped = RLScheduler(ROOT / "checkpoints" / "default.zip")
    width = shipped.model.observation_space["tasks"].shape[1]
    assert width == TASK_FEATURES - sum(len(cs) for v, cs in ADDED_TASK_COLUMNS.items()
                                        if v > shipped.encoder_version)


def test_training_goes_on_only_from_a_checkpoint_of_this_encoder_version(tmp_path):
    """--resume would feed an older network observations of the wrong width:
    refused with one line before anything is trained."""
    from envs.encoder import ENCODER_VERSION, READABLE_VERSIONS

    src = ROOT / "checkpoints" / "v9.zip"  # the policy shipped before, of encoder version 9
    older = tmp_path / "older.zip"
    shutil.copy(src, older)
    shutil.copy(src.with_suffix(".json"), older.with_suffix(".json"))
    card = json.loads(src.with_suffix(".json").read_text())
    assert card["encoder_version"] == READABLE_VERSIONS[0] != ENCODER_VERSION
    proc = subprocess.run(
        [sys.executable, "-m", "rlsched", "train", "--config", str(ROOT / "configs" / "quick.yaml"),
         "--resume", str(older), "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"encoder version {READABLE_VERSIONS[0]}" in lines[0], proc.stderr
    assert str(older) in lines[0] and "train anew" in lines[0]
