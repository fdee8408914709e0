"""The Gymnasium environment: its contract with Gymnasium, SB3 and our simulator."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import envs
from envs import DagSchedulingEnv, InvalidActionError
from envs.encoder import (
    DEVICE_ADVICE,
    DEVICE_FEATURES,
    QUEUE_WAITS,
    TASK_ADVICE,
    TASK_FEATURES,
    DeviceColumn,
    gang_of,
)
from rlsched.evaluation.evaluate import run_episode
from rlsched.metrics import measure
from rlsched.perturbations import THROTTLE
from rlsched.schedulers import make_scheduler
from rlsched.schedulers.upward_ranks import upward_rank
from rlsched.view import Placement, TaskState
from tests.helpers import ROOT, STG, WFCOMMONS, check_schedule

SOURCES = {
    "stg": f"stg:{STG / '50'}",
    "wfcommons": f"wfcommons:{WFCOMMONS}",
    "jobs": f"jobs:{ROOT / 'examples' / 'jobs'}",
    "synthetic": "synthetic:mixed?jobs=3",
    "gangs": "synthetic:gangs?jobs=6&max_gpus=2",
}
POOLS = ["identical:2", "preset:workstation-4", "identical:8"]
# SB3 notes that graph arrays are neither images nor vectors: expected, we
# strip the padding in our own features extractor.
EXPECTED_WARNINGS = ("unconventional shape",)


def play_random(env: DagSchedulingEnv, seed: int):
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    observations, rewards = [obs], []
    done = False
    while not done:
        mask = env.action_masks()
        assert mask.any()
        obs, reward, done, truncated, info = env.step(env.action_space.sample())
        assert not truncated
        observations.append(obs)
        rewards.append(reward)
    return observations, rewards, info


def test_import_registers_the_env_and_make_needs_only_workload_and_pool():
    env = gymnasium.make(envs.ENV_ID, workload=SOURCES["stg"], pool="identical:4")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.action_space.n == 16 * 8 + 1


@pytest.mark.parametrize("reward", ["jct", "makespan", "weighted_jct"])
def test_both_env_checkers_pass(reward):
    env = gymnasium.make(envs.ENV_ID, workload=SOURCES["stg"], pool="identical:4",
                         reward=reward).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env)
        sb3_check_env(env)
    unexpected = [str(w.message) for w in caught
                  if not any(e in str(w.message) for e in EXPECTED_WARNINGS)]
    assert unexpected == []


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_random_masked_episodes_never_crash_and_keep_the_invariants(source, pool):
    # 5 sources x 3 pools x 3 seeds x 6 episodes = 270 episodes
    arrivals = "poisson" if source in ("synthetic", "gangs") else "batch"
    env = DagSchedulingEnv(SOURCES[source], pool, arrivals=arrivals, perturb="all")
    for seed in range(3):
        for episode in range(6):
            observations, rewards, info = play_random(env, 100 * seed + episode)
            for obs in observations[::7]:
                assert env.observation_space.contains(obs)
            result = env.sim.result()
            m = measure(result)
            check_schedule(env.pool, result, m)
            assert info["makespan"] == pytest.approx(m.makespan)


def test_the_same_seed_gives_the_same_observations_and_returns():
    env = DagSchedulingEnv(SOURCES["synthetic"], "preset:workstation-4", arrivals="poisson",
                           perturb="all")
    obs_a, rew_a, _ = play_random(env, 42)
    obs_b, rew_b, _ = play_random(env, 42)
    obs_c, rew_c, _ = play_random(env, 43)
    assert rew_a == rew_b and rew_a != rew_c
    assert len(obs_a) == len(obs_b)
    for a, b in zip(obs_a, obs_b):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_sampling_without_a_mask_is_gymnasiums_draw_under_the_current_mask():
    # the space reads its environment's mask; the draw (and the generator
    # left after it) is the stock Discrete.sample(mask), so a random agent's
    # episode is what it was before the draw was made cheaper
    env = DagSchedulingEnv("synthetic:mixed?jobs=8", "preset:workstation-4", arrivals="poisson")
    env.reset(seed=4)
    env.action_space.seed(9)
    stock = gymnasium.spaces.Discrete(env.action_space.n, seed=9)
    done, steps = False, 0
    while not done:
        mask = env.action_masks()
        action = env.action_space.sample()
        assert action == stock.sample(mask=mask.astype(np.int8))
        _, _, done, _, _ = env.step(action)
        steps += 1
    assert steps > 30
    assert env.action_space.np_random.bit_generator.state == stock.np_random.bit_generator.state


@pytest.mark.parametrize("spec,pool", [(f"stg:{STG / '50' / 'rand0007.stg'}", "identical:4"),
                                       (f"wfcommons:{WFCOMMONS / 'sarek-dirt02-001.json'}",
                                        "preset:workstation-4")])
def test_following_heft_in_the_env_reaches_heft_makespan(spec, pool):
    env = DagSchedulingEnv(spec, pool, max_tasks=64, max_ready=64)
    env.reset(seed=0)
    heft = make_scheduler("heft")
    heft.reset(env.sim.seed)
    done = False
    while not done:
        placements = heft.decide(env.view)
        action = env.action_for(placements[0] if placements else None)
        _, _, done, _, info = env.step(action)
    direct = measure(run_episode(env.instance, env.pool, make_scheduler("heft"), env.sim.seed,
                                 estimates=env.estimates))
    assert info["makespan"] == pytest.approx(direct.makespan, rel=1e-12)


def test_the_jct_return_is_minus_average_jct_over_its_lower_bound():
    env = DagSchedulingEnv(SOURCES["wfcommons"], "preset:workstation-4", arrivals="poisson",
                           perturb="all")
    _, rewards, info = play_random(env, 3)
    assert sum(rewards) == pytest.approx(-info["avg_jct"] / info["jct_lower_bound"], rel=1e-9)
    env = DagSchedulingEnv(SOURCES["stg"], "identical:4", reward="makespan")
    _, rewards, info = play_random(env, 3)
    assert sum(rewards) == pytest.approx(-info["makespan"] / info["lower_bound"], rel=1e-9)


@pytest.mark.parametrize("reward", ["jct", "makespan"])
def test_with_a_baseline_the_return_is_the_gain_over_the_baseline_heuristic(reward):
    env = DagSchedulingEnv(SOURCES["wfcommons"], "preset:workstation-4", arrivals="poisson",
                           perturb="all", reward=reward, baseline="share")
    _, rewards, info = play_random(env, 3)
    if reward == "jct":
        gain = (info["baseline_avg_jct"] - info["avg_jct"]) / info["jct_lower_bound"]
    else:
        gain = (info["baseline_makespan"] - info["makespan"]) / info["lower_bound"]
    assert gain < 0  # random is worse than share
    assert sum(rewards) == pytest.approx(gain, rel=1e-9)
    direct = measure(run_episode(env.instance, env.pool, make_scheduler("share"), env.sim.seed,
                                 env.perturbations, env.estimates))
    assert info["baseline_avg_jct"] == direct.avg_jct


@pytest.mark.parametrize("reward, measured", [("jct", "avg_jct"), ("makespan", "makespan")])
def test_with_several_baselines_the_return_is_the_gain_over_the_best_of_them_on_the_episode(
        reward, measured):
    env = DagSchedulingEnv(SOURCES["wfcommons"], "preset:workstation-4", arrivals="poisson",
                           perturb="all", reward=reward, baseline=["fifo", "share", "sjf"])
    picked = set()
    for seed in range(3):
        _, rewards, info = play_random(env, seed)
        runs = {name: measure(run_episode(env.instance, env.pool, make_scheduler(name),
                                          env.sim.seed, env.perturbations, env.estimates))
                for name in ("fifo", "share", "sjf")}
        best = min(runs, key=lambda name: getattr(runs[name], measured))
        assert info["baseline_avg_jct"] == runs[best].avg_jct
        assert info["baseline_makespan"] == runs[best].makespan
        bound = info["jct_lower_bound"] if reward == "jct" else info["lower_bound"]
        assert sum(rewards) == pytest.approx(
            (getattr(runs[best], measured) - info[measured]) / bound, rel=1e-9)
        picked.add(best)
    if reward == "jct":
        assert "fifo" not in picked  # the weakest on JCT is never the one measured against


def test_a_policy_that_is_its_baseline_gets_zero_reward_at_every_step():
    """The baseline is subtracted interval by interval, not only at the end:
    the reward says at each step whether the policy is ahead of it so far."""
    env = DagSchedulingEnv(f"stg:{STG / '50'}", "identical:4", reward="jct", baseline="heft")
    env.reset(seed=2)
    rewards, done = [], False
    while not done:
        _, reward, done, _, info = env.step(env.action_for(env.advice[1]))
        rewards.append(reward)
    assert info["avg_jct"] == pytest.approx(info["baseline_avg_jct"], rel=1e-12)
    assert max(abs(r) for r in rewards) < 1e-9 and len(rewards) > 10


def test_an_invalid_action_raises_a_clear_error():
    env = DagSchedulingEnv(SOURCES["stg"], "identical:2")
    env.reset(seed=0)
    mask = env.action_masks()
    assert not mask[-1]  # nothing runs yet: waiting would never end
    with pytest.raises(InvalidActionError, match="wait is not allowed while nothing runs"):
        env.step(env.action_space.n - 1)
    invalid_device = 0 * env.maxima.devices + 5  # slot 0 on device 5 of a 2-device pool
    with pytest.raises(InvalidActionError, match="device 5, but the pool has 2"):
        env.step(invalid_device)
    empty_slot = (env.maxima.ready - 1) * env.maxima.devices
    if not mask[empty_slot]:
        with pytest.raises(InvalidActionError, match="slot"):
            env.step(empty_slot)
    with pytest.raises(InvalidActionError, match="outside"):
        env.step(10_000)


def test_the_mask_allows_exactly_the_placements_the_simulator_accepts():
    env = DagSchedulingEnv(SOURCES["wfcommons"], "preset:workstation-4", arrivals="poisson",
                           perturb="all")
    env.reset(seed=5)
    env.action_space.seed(5)
    for _ in range(60):
        if env.view is None:
            break
        mask = env.action_masks()
        enc, m = env._enc, env.maxima
        for a in range(m.n_actions - 1):
            slot, device = divmod(a, m.devices)
            accepted = slot < enc.n_slots and env.sim.can_place(int(enc.window[slot]), device)
            assert mask[a] == accepted
        env.step(env.action_space.sample())


def test_a_gangs_action_is_allowed_exactly_where_its_first_device_finds_mates():
    env = DagSchedulingEnv("synthetic:gangs?jobs=8&max_gpus=4", "preset:workstation-4",
                           arrivals="poisson", perturb="all")
    env.reset(seed=2)
    env.action_space.seed(2)
    gang_actions = 0
    for _ in range(200):
        if env.view is None:
            break
        mask, enc, m, view = env.action_masks(), env._enc, env.maxima, env.view
        for a in range(m.n_actions - 1):
            slot, device = divmod(a, m.devices)
            if slot >= enc.n_slots or device >= len(view.devices):
                assert not mask[a]
                continue
            task = int(enc.window[slot])
            if view.gpus(task) == 1:
                assert mask[a] == env.sim.can_place(task, device)
                continue
            gang_actions += 1
            gang = gang_of(view, task, device)
            assert mask[a] == (gang is not None)
            if gang is not None:
                assert gang[0] == device and len(gang) == view.gpus(task)
                assert env.sim.can_place(task, gang[0], gang[1:])
        env.step(env.action_space.sample())
    assert gang_actions > 0


def test_works_in_dummy_subproc_and_make_vec_env():
    kwargs = {"workload": SOURCES["stg"], "pool": "identical:4"}
    for vec in (DummyVecEnv([lambda: DagSchedulingEnv(**kwargs)] * 2),
                SubprocVecEnv([lambda: DagSchedulingEnv(**kwargs)] * 2),
                make_vec_env(envs.ENV_ID, n_envs=2, env_kwargs=kwargs)):
        obs = vec.reset()
        assert obs["tasks"].shape == (2, 64, TASK_FEATURES)
        for _ in range(30):
            masks = np.array(vec.env_method("action_masks"))
            actions = [int(np.flatnonzero(m)[0]) for m in masks]
            obs, rewards, dones, infos = vec.step(np.array(actions))
        assert obs["devices"].shape == (2, 8, DEVICE_FEATURES)
        vec.close()


def test_a_throttled_device_shows_in_telemetry_before_its_task_finishes_late(tmp_path):
    jobfile = tmp_path / "probe.yaml"
    shorts = "\n".join(f"  - {{id: s{i}, estimate: 100}}" for i in range(300))
    jobfile.write_text(f"name: probe\ntasks:\n  - {{id: long, estimate: 20000}}\n{shorts}\n")
    env = DagSchedulingEnv(f"jobs:{jobfile}", "identical:2", perturb="throttle", max_ready=4)
    env.reset(seed=0)
    first_throttle, _, _ = next(env.perturbations.timeline(env.sim.seed, 0, THROTTLE))
    assert first_throttle < 20000  # the throttle begins while the long task runs
    long_task = env.sim.table.task_ids.index(("probe", "long"))
    env.step(env.action_for(Placement(long_task, 0)))
    seen_slow_while_running = False
    while env.view is not None:
        obs = env._obs()
        if obs["devices"][0, DeviceColumn.CLOCK] < 0.99 and long_task in {r.task for r in env.view.running}:
            seen_slow_while_running = True
            break
        slots = env._enc.n_slots
        idle = [j for j in (1,) if env.view.devices[j].n_tasks == 0]
        env.step(env.action_for(Placement(int(env._enc.window[0]), idle[0]))
                 if slots and idle else env.maxima.n_actions - 1)
    assert seen_slow_while_running
    while env.view is not None:  # finish the episode: the long task ends late
        env.step(env.maxima.n_actions - 1 if env.action_masks()[-1]
                 else int(np.flatnonzero(env.action_masks())[0]))
    (long_run,) = [a for a in env.sim.result().trace if a.task == long_task and a.ok]
    assert long_run.end - long_run.start > 20000


@pytest.mark.parametrize("advisor", ["share", "heft", "cp", "tetris", "sjf"])
def test_following_an_advisor_step_by_step_is_that_advisor(advisor):
    """Online, perturbed, several jobs: an agent that always takes advisor
    k's advice (one placement per step) makes exactly the advisor's schedule,
    and the observation's advice columns show that advice at every step."""
    from envs.advice import ADVISORS

    k = ADVISORS.index(advisor)
    env = DagSchedulingEnv("synthetic:mixed?jobs=4", "preset:workstation-4",
                           arrivals="poisson", perturb="all")
    obs, _ = env.reset(seed=3)
    done, steps = False, 0
    while not done:
        advice = env.advice[k]
        if advice is None:
            assert obs["queue"][QUEUE_WAITS[k]] == 1 and not obs["tasks"][:, TASK_ADVICE[k]].any()
            assert not obs["devices"][:, DEVICE_ADVICE[k]].any()
        else:
            assert obs["queue"][QUEUE_WAITS[k]] == 0
            assert np.flatnonzero(obs["devices"][:, DEVICE_ADVICE[k]]).tolist() == [advice.device]
            rows = np.flatnonzero(obs["tasks"][:, TASK_ADVICE[k]]).tolist()
            slots = [int(t) for t in env._enc.window[:env._enc.n_slots]]
            assert rows == [slots.index(advice.task)]
        obs, _, done, _, info = env.step(env.action_for(advice))
        steps += 1
    assert steps > 10
    direct = run_episode(env.instance, env.pool, make_scheduler(advisor), env.sim.seed,
                         env.perturbations, env.estimates)
    assert [(a.task, a.device, a.start) for a in env.sim.result().trace] == \
        [(a.task, a.device, a.start) for a in direct.trace]


@pytest.mark.parametrize("advisor", ["share", "cp", "tetris", "sjf"])
def test_following_an_advisor_that_places_gangs_is_that_advisor(advisor):
    """An action names a gang's first device and :func:`gang_of` picks its
    mates: idle devices first, as the heuristics' gangs take them. So an
    agent that follows share, cp, tetris or sjf on a stream of 1- to 8-GPU jobs
    makes exactly that advisor's schedule, every gang on the same devices.
    (heft places a gang's mates by its plan, which no rule of the moment can
    reproduce.)"""
    from envs.advice import ADVISORS

    k = ADVISORS.index(advisor)
    env = DagSchedulingEnv("synthetic:gangs?jobs=10", "identical:8", arrivals="poisson")
    env.reset(seed=1)
    done = False
    while not done:
        _, _, done, _, _ = env.step(env.action_for(env.advice[k]))
    direct = run_episode(env.instance, env.pool, make_scheduler(advisor), env.sim.seed,
                         env.perturbations, env.estimates)
    assert sum(len(a.devices) > 1 for a in direct.trace) >= 5
    assert [(a.task, a.devices, a.start) for a in env.sim.result().trace] == \
        [(a.task, a.devices, a.start) for a in direct.trace]


def test_an_agent_that_always_takes_share_advice_is_share_even_in_a_crowd():
    """Online, share lets a short task from deep in the queue share a busy
    GPU; that task is always given a ready slot, so following the advice is
    always possible and reproduces share, even with far more ready tasks
    than slots."""
    env = DagSchedulingEnv(SOURCES["wfcommons"], "preset:workstation-4", arrivals="poisson",
                           perturb="all", max_ready=8)
    env.reset(seed=1)
    done, crowded = False, 0
    while not done:
        crowded += len(env.view.ready) > env.maxima.ready
        _, _, done, _, info = env.step(env.action_for(env.advice[0]))
    assert crowded > 100
    direct = run_episode(env.instance, env.pool, make_scheduler("share"), env.sim.seed,
                         env.perturbations, env.estimates)
    assert info["avg_jct"] == pytest.approx(measure(direct).avg_jct, rel=1e-12)


def test_an_agent_that_always_takes_heft_advice_is_heft():
    """On a batch DAG the advice is a plan to follow: taking it reproduces
    heft's schedule exactly, so a policy that learns to trust it is as good."""
    env = DagSchedulingEnv(f"stg:{STG / '50'}", "identical:4")
    for seed in range(3):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, done, _, info = env.step(env.action_for(env.advice[1]))
        direct = measure(run_episode(env.instance, env.pool, make_scheduler("heft"), env.sim.seed,
                                 estimates=env.estimates))
        assert info["makespan"] == pytest.approx(direct.makespan, rel=1e-12)


@pytest.mark.parametrize("workload, arrivals", [("synthetic:layered?jobs=8&tasks=60", "batch"),
                                                 (SOURCES["wfcommons"], "poisson")])
def test_a_window_taken_from_the_top_of_a_long_queue_is_the_full_sorts(workload, arrivals,
                                                                       monkeypatch):
    """With more tasks ready than the window has rows, the encoder picks the
    first ones and the advised ones without sorting the rest of the queue:
    every observation is the one sorting the whole queue gives, whether or
    not an advised task lies beyond the window's rows, and without advice."""
    import envs.encoder as encoder

    # a small window (24 rows, 8 slots), so that queues outgrow it often
    env = DagSchedulingEnv(workload, "preset:workstation-4", arrivals=arrivals, load=1.5,
                           perturb="all", max_tasks=24, max_ready=8)
    env.action_space.seed(0)
    env.reset(seed=5)
    m, done = env.maxima, False
    long = beyond = 0
    while not done:
        view, statics = env.view, env.statics
        # advice names ready tasks; advice that names others (here the last
        # two advisors') is left out of the slots by both
        astray = list(env.advice)
        for k, t in zip((3, 4), [t for t, s in enumerate(view.task_state)
                                 if s == TaskState.BLOCKED]):
            astray[k] = Placement(t, 0)
        for advice in (env.advice, None, astray):
            monkeypatch.setattr(encoder, "_SORT_WHOLE_QUEUE", True)
            whole = encoder.encode(view, statics, m, None, advice)
            monkeypatch.setattr(encoder, "_SORT_WHOLE_QUEUE", False)
            top = encoder.encode(view, statics, m, None, advice)
            assert top.window.tolist() == whole.window.tolist()
            assert top.n_slots == whole.n_slots
            for key, value in whole.obs.items():
                assert np.array_equal(top.obs[key], value), key
        if len(view.ready) > m.tasks:
            long += 1
            remaining, job_of, rank = view.job_remaining, view.table.job_of, statics.rank_list
            order = sorted(view.ready, key=lambda t: (remaining[job_of[t]], -rank[t]))
            advised = {p.task for p in env.advice if p is not None}
            beyond += any(t in advised for t in order[m.tasks:])
        _, _, done, _, _ = env.step(env.action_space.sample())
    assert long > 30
    assert beyond > 0  # an advised task deep in the queue was brought in


@pytest.mark.parametrize("workload", ["synthetic:layered?jobs=4&tasks=30", SOURCES["wfcommons"]])
def test_the_encoders_ranks_kept_between_beliefs_are_the_full_pass(workload):
    # as the runtime model re-predicts, the encoder re-ranks only the tasks
    # whose cost moved and their ancestors: every unfinished task's rank must
    # be the float a full pass over the current beliefs gives
    env = DagSchedulingEnv(workload, "preset:workstation-4", arrivals="poisson", load=0.9)
    env.action_space.seed(0)
    env.reset(seed=3)
    checked = reranked = 0
    done = False
    while not done:
        statics, view = env.statics, env.view
        work = np.asarray(view.predicted)
        cost = np.where(statics.gpu, work * statics._inv_mean_speed[statics.kind], work)
        full = upward_rank(cost.tolist(), view.table.children)
        open_ = [t for t, s in enumerate(view.task_state) if s != TaskState.DONE]
        assert [statics.rank_list[t] for t in open_] == [full[t] for t in open_]
        assert statics.rank[open_].tolist() == [full[t] for t in open_]
        assert statics.work.tolist() == list(view.predicted)  # finished tasks read as they end
        checked += 1
        reranked += statics.rank_list != full  # finished tasks' ranks left behind
        _, _, done, _, _ = env.step(env.action_space.sample())
    assert checked > 50
    assert reranked > 0  # the kept ranks were in use, not rebuilt each time
