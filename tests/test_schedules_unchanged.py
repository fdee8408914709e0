"""Speed work must not change a schedule: every heuristic's trace on four of
the README's benchmark settings, hashed, against the hash it had before the
work began.

The settings: the demo's online benchmark (seed 0), the multi-GPU one, the
Gavel trace slice, and a batch of 1,000 layered tasks on 64 GPUs (the scale
benchmark's smallest cell, where the ready queue is long and the pool wide).
A hash that differs means a schedule changed: if the change is meant (a
better heuristic), say so in the commit and record the new hash with
``python -m tests.test_schedules_unchanged``.
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest

from rlsched.estimates import EstimateModel
from rlsched.evaluation.evaluate import episodes, run_episode
from rlsched.evaluation.scale import HEURISTICS, scale_instance
from rlsched.perturbations import Perturbations
from rlsched.pool import identical_pool
from rlsched.sources.specs import resolve_pool
from tests.helpers import ROOT, WORKLOADS

SETTINGS = {
    "demo": (f"wfcommons:{WORKLOADS / 'wfcommons'}", "preset:workstation-4", "poisson", "all"),
    "gangs": ("synthetic:gangs", "identical:8", "poisson", "none"),
    "gavel": (f"trace:gavel:{WORKLOADS / 'gavel'}", "preset:lab-kpv", "trace", "none"),
    "scale": (None, "identical:64", "batch", "none"),
}

#: sha256 of each heuristic's trace, first 16 hex digits, before the speed work
RECORDED: dict[tuple[str, str], str] = {
    ('demo', 'random'): '0bf5f10cc1da98ef',
    ('demo', 'fifo'): '8104c384fda00ba2',
    ('demo', 'sjf'): '1775a6f80336d392',
    ('demo', 'cp'): '4a542cac15222e87',
    ('demo', 'tetris'): '886a5172720aa467',
    ('demo', 'share'): '10b697949ee5d433',
    ('demo', 'heft'): '93355e2d562f5d40',
    ('demo', 'las'): 'd9b572539da16d9a',
    ('demo', 'backfill'): '8104c384fda00ba2',
    ('gangs', 'random'): '98e6b6f84d09bf37',
    ('gangs', 'fifo'): '9e6eafefc4bb1f1c',
    ('gangs', 'sjf'): 'e0cc2c2cc1002173',
    ('gangs', 'cp'): '8280950eb57bb3df',
    ('gangs', 'tetris'): '29826506a793440e',
    ('gangs', 'share'): 'cdcb275703d441ee',
    ('gangs', 'heft'): '62df004e088bd6a7',
    ('gangs', 'las'): 'e24ca1ff0cec3c3a',
    ('gangs', 'backfill'): 'ad8d7a1b0a97f489',
    ('gavel', 'random'): '4937571f1521b639',
    ('gavel', 'fifo'): '6988d48c5c5a21aa',
    ('gavel', 'sjf'): 'e7d8e63f99e02004',
    ('gavel', 'cp'): 'e71d24a42bee246b',
    ('gavel', 'tetris'): '1e5debb40981a18c',
    ('gavel', 'share'): '8923871b5c4a9a94',  # share's first runs
    ('gavel', 'heft'): '7ed7124a6b305e90',
    ('gavel', 'las'): '6988d48c5c5a21aa',
    ('gavel', 'backfill'): 'bd95b7e7d15ac5ba',
    ('scale', 'random'): 'cd0eeb2270109e37',
    ('scale', 'fifo'): '26f23de1b4dd80fe',
    ('scale', 'sjf'): 'd3c8016fee25afe9',
    ('scale', 'cp'): '0e3319140c897420',
    ('scale', 'tetris'): '435a21f1ba51c44b',
    ('scale', 'share'): '99288da1f0d23a22',  # share's first runs
    ('scale', 'heft'): '34f1677ec2b1ee05',
    ('scale', 'las'): 'b361fd5e391c2ba5',
    ('scale', 'backfill'): '26f23de1b4dd80fe',
}


@cache
def _episodes(setting: str):
    workload, pool_spec, arrivals, perturb = SETTINGS[setting]
    pool = identical_pool(64) if workload is None else resolve_pool(pool_spec)
    if workload is None:
        return pool, [(scale_instance(1000), 0)], Perturbations.parse(perturb)
    runs = [(inst, seed) for _, inst, seed in episodes([workload], pool, arrivals, 0.85, [0])]
    return pool, runs[:3], Perturbations.parse(perturb)


def trace_hash(setting: str, scheduler: str) -> str:
    from rlsched.schedulers import make_scheduler

    pool, runs, perturbations = _episodes(setting)
    digest = hashlib.sha256()
    for instance, seed in runs:
        result = run_episode(instance, pool, make_scheduler(scheduler), seed, perturbations,
                             EstimateModel.parse("default"))
        for a in result.trace:
            digest.update(repr((a.task, a.devices, a.start, a.end, a.ok)).encode())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("scheduler", HEURISTICS)
def test_every_heuristic_schedules_as_it_did(setting: str, scheduler: str) -> None:
    assert trace_hash(setting, scheduler) == RECORDED[setting, scheduler]


#: the shipped policy's traces (re-recorded when a new policy is shipped)
POLICY = {"demo": "10b697949ee5d433", "gavel": "b89e8e06f84f1a10"}
#: an earlier policy (encoder version 9, checkpoints/v9.zip), recorded when it was shipped:
#: an earlier version's checkpoint is handed the observation it trained on
EARLIER_POLICY = {"demo": "49bc7a0a9eb2e7e3", "gavel": "ab9e2cfa7697cc28"}


@pytest.mark.parametrize("setting", list(POLICY))
def test_the_shipped_policy_schedules_as_it_did(setting: str) -> None:
    import agents  # noqa: F401  (registers rl:)

    assert trace_hash(setting, f"rl:{ROOT / 'checkpoints' / 'default.zip'}") == POLICY[setting]


@pytest.mark.parametrize("setting", list(EARLIER_POLICY))
def test_the_policy_shipped_before_schedules_as_it_did(setting: str) -> None:
    import agents  # noqa: F401  (registers rl:)

    assert trace_hash(setting, f"rl:{ROOT / 'checkpoints' / 'v9.zip'}") == EARLIER_POLICY[setting]


if __name__ == "__main__":
    for s in SETTINGS:
        for h in HEURISTICS:
            print(f"    ({s!r}, {h!r}): {trace_hash(s, h)!r},")


#: what the environment observes, hashed, before the encoder's speed work
#: (re-recorded when a column is added: encoder version 8 has the GPUS column,
#: version 9 sjf's advice, version 10 the belief's spread, the estimate, the
#: elapsed time and whether the kind was seen; with those five columns taken
#: out, version 10 hashes as version 9 did: e23e59b7f867511c, 38afb7f78767c15c;
#: and when the time scale changes: version 11's is that of the jobs in the
#: system, and on version 10's scale it hashes as version 10 did:
#: afd1f4146f2fe2d3, 09483576c0cd914d)
OBSERVATIONS = {"demo": "eb9bd2576f7c89ae", "gangs": "579544c6f645c1e5"}


def observation_hash(setting: str, steps: int = 300) -> str:
    """Every observation, mask and reward of an environment episode on
    ``setting``, under seeded random valid actions, hashed: what a policy
    trains on and decides from."""
    import numpy as np

    from envs.dag_env import DagSchedulingEnv

    workload, pool, arrivals, perturb = SETTINGS[setting]
    env = DagSchedulingEnv(workload, pool, arrivals=arrivals, perturb=perturb)
    rng = np.random.default_rng(0)
    digest = hashlib.sha256()
    obs, _ = env.reset(seed=0)
    for _ in range(steps):
        mask = env.action_masks()
        for key in sorted(obs):
            digest.update(obs[key].tobytes())
        digest.update(mask.tobytes())
        obs, reward, done, _, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        digest.update(repr(reward).encode())
        if done:
            obs, _ = env.reset()
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("setting", list(OBSERVATIONS))
def test_the_environment_observes_as_it_did(setting: str) -> None:
    assert observation_hash(setting) == OBSERVATIONS[setting]
