"""The encoder's column enums are the one source of the observation's layout:
the spaces, the code and both docstrings agree with them."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import envs.encoder
from envs import DagSchedulingEnv
from envs.advice import ADVISORS
from envs.encoder import (
    COLUMN_BLOCKS,
    DEVICE_ADVICE,
    QUEUE_WAITS,
    TASK_ADVICE,
    DeviceColumn,
    EdgeColumn,
    QueueColumn,
    TaskColumn,
    document_columns,
)
from tests.helpers import STG

SPEC = f"stg:{STG / '50'}"
TABLE_ROW = re.compile(r"^ *(\d+) +([A-Z_]+) +(.+)$", re.MULTILINE)
docstrings = pytest.mark.skipif(sys.flags.optimize >= 2, reason="docstrings stripped (-OO)")


def test_each_block_has_as_many_columns_as_its_space_and_they_number_from_zero():
    env = DagSchedulingEnv(SPEC, "identical:4", max_tasks=12, max_ready=3, max_devices=5,
                           max_edges=7)
    obs, _ = env.reset(seed=0)
    for key, columns in COLUMN_BLOCKS.items():
        assert env.observation_space[key].shape[-1] == len(columns), key
        assert obs[key].shape[-1] == len(columns), key
        assert [int(c) for c in columns] == list(range(len(columns)))
        assert all(c.doc.strip() for c in columns)


def test_the_advice_columns_follow_the_advisors_in_order():
    for columns, suffix in ((TASK_ADVICE, "_ADVICE"), (DEVICE_ADVICE, "_ADVICE"),
                            (QUEUE_WAITS, "_WAITS")):
        assert [c.name for c in columns] == [f"{a.upper()}{suffix}" for a in ADVISORS]
    # the advice columns close each block, as the checkpoint's encoder version expects
    assert TASK_ADVICE[-1] == len(TaskColumn) - 1
    assert DEVICE_ADVICE[-1] == len(DeviceColumn) - 1
    assert QUEUE_WAITS[-1] == len(QueueColumn) - 1


@docstrings
@pytest.mark.parametrize("doc", [envs.encoder.__doc__, DagSchedulingEnv.__doc__],
                         ids=["encoder", "env"])
def test_both_docstrings_list_exactly_the_enums_columns_and_sizes(doc):
    expected = [(str(int(c)), c.name, c.doc) for columns in COLUMN_BLOCKS.values()
                for c in columns]
    assert TABLE_ROW.findall(doc) == expected
    assert f"``tasks`` (M.tasks x {len(TaskColumn)})" in doc
    assert f"``edges`` (M.edges x {len(EdgeColumn)})" in doc
    assert f"``devices`` (M.devices x {len(DeviceColumn)})" in doc
    assert f"``queue`` ({len(QueueColumn)})" in doc
    assert "{" not in doc  # every placeholder filled


def test_document_columns_indents_a_table_like_its_placeholder():
    doc = document_columns("Edges, {len(EdgeColumn)} columns:\n\n      {EdgeColumn}\n\nEnd.")
    lines = doc.splitlines()
    assert lines[0] == "Edges, 2 columns:"
    table = lines[2:-2]
    assert len(table) == 2 + len(EdgeColumn)
    assert all(line.startswith("      ") for line in table)
    assert table[0].startswith("      ==") and table[-1] == table[0]
    assert table[1].split() == ["0", "PARENT", *EdgeColumn.PARENT.doc.split()]
    assert document_columns(None) is None


def test_columns_documented_as_flags_hold_flags_and_durations_are_not_negative():
    env = DagSchedulingEnv("synthetic:mixed?jobs=3", "preset:workstation-4", arrivals="poisson",
                           perturb="all")
    obs, _ = env.reset(seed=4)
    env.action_space.seed(4)
    blocks = {"tasks": TaskColumn, "devices": DeviceColumn, "queue": QueueColumn}
    for _ in range(40):
        for key, columns in blocks.items():
            values = np.atleast_2d(obs[key])
            for c in columns:
                if "(0/1" in c.doc:
                    assert set(np.unique(values[:, c])) <= {0.0, 1.0}, c
                if "log-duration" in c.doc:
                    assert (values[:, c] >= 0).all(), c
        filled = obs["task_mask"] == 1
        state = obs["tasks"][filled][:, [TaskColumn.IS_READY, TaskColumn.IS_BLOCKED,
                                         TaskColumn.IS_RUNNING]]
        assert (state.sum(axis=1) == 1).all()
        obs, _, done, _, _ = env.step(env.action_space.sample())
        if done:
            break


def test_the_gpus_column_tells_a_gang_from_a_one_gpu_task_and_a_cpu_task():
    """A policy cannot place a gang well without seeing its size: the column
    is each window row's GPUs over the pool's (0 for a CPU-only task)."""
    env = DagSchedulingEnv("synthetic:gangs?jobs=12", "identical:8", arrivals="poisson")
    obs, _ = env.reset(seed=1)
    env.action_space.seed(1)
    seen: set[int] = set()
    for _ in range(60):
        rows = int(obs["task_mask"].sum())
        window = env._enc.window[:rows]
        gpus = np.array([env.sim.table.gpus[t] for t in window])
        assert np.allclose(obs["tasks"][:rows, TaskColumn.GPUS], gpus / 8)
        seen |= set(gpus.tolist())
        obs, _, done, _, _ = env.step(env.action_space.sample())
        if done:
            break
    assert {1, 2, 4} <= seen


def _rows(env: DagSchedulingEnv, obs: dict) -> list[int]:
    return [int(t) for t in env._enc.window[:int(obs["task_mask"].sum())]]


@pytest.mark.parametrize("estimates", ["default", "none"])
def test_the_belief_columns_say_what_a_prediction_rests_on(estimates: str) -> None:
    """A policy can weigh a prediction only if it sees how much it is worth:
    the runtime model's spread, the user's estimate (or that there is none),
    and whether the task's kind has finished runs, each the view's own."""
    env = DagSchedulingEnv("wfcommons:workloads/wfcommons", "preset:workstation-4",
                           arrivals="poisson", perturb="all", estimates=estimates)
    obs, _ = env.reset(seed=2)
    env.action_space.seed(2)
    kinds_seen = set()
    spreads = set()
    for _ in range(400):
        view, tasks, scale = env.view, obs["tasks"], env.statics.scale  # this view's scale
        for i, t in enumerate(_rows(env, obs)):
            assert tasks[i, TaskColumn.SPREAD] == np.float32(view.spread[t])
            estimate = view.table.estimate[t]
            assert tasks[i, TaskColumn.HAS_ESTIMATE] == (not np.isnan(estimate))
            expected = np.log1p(estimate / scale) if not np.isnan(estimate) else 0.0
            assert tasks[i, TaskColumn.ESTIMATE] == np.float32(expected)
            seen = view.table.history_key[t] in view.known_kinds
            assert tasks[i, TaskColumn.KIND_SEEN] == seen
            kinds_seen.add(seen)
            spreads.add(float(tasks[i, TaskColumn.SPREAD]))
        obs, _, done, _, _ = env.step(env.action_space.sample())
        if done:
            break
    assert kinds_seen == {False, True}  # kinds go from unseen to seen as tasks finish
    assert len(spreads) > 2  # and their spreads narrow as history grows
    if estimates == "none":
        assert not obs["tasks"][:, TaskColumn.ESTIMATE].any()


def test_a_running_task_shows_how_long_it_has_run() -> None:
    env = DagSchedulingEnv("synthetic:mixed?jobs=3", "preset:workstation-4", arrivals="poisson")
    obs, _ = env.reset(seed=4)
    env.action_space.seed(4)
    ran = 0
    for _ in range(200):
        view = env.view
        started = {r.task: r.start for r in view.running}
        for i, t in enumerate(_rows(env, obs)):
            if t in started:
                elapsed = view.time - started[t]
                assert obs["tasks"][i, TaskColumn.ELAPSED] == np.float32(
                    np.log1p(elapsed / env.statics.scale))
                ran += elapsed > 0
            else:
                assert obs["tasks"][i, TaskColumn.ELAPSED] == 0.0
        obs, _, done, _, _ = env.step(env.action_space.sample())
        if done:
            break
    assert ran > 10  # running tasks seen part-way through, not only as they start
