"""The runtime model: predictions from estimates and history, worked out by
hand, and the same history giving the same predictions in the simulator and
in the live daemon."""

from __future__ import annotations

import math

import pytest

from rlsched.estimates import EstimateModel
from rlsched.live.history import LiveBeliefs, observations, speed_from_models
from rlsched.live.store import Store
from rlsched.pool import preset_pool
from rlsched.runtime_model import (
    DEFAULT_RUNTIME_S,
    ESTIMATE_SIGMA,
    EXACT_UP_TO,
    UNKNOWN_SIGMA,
    RuntimeModel,
    history_key,
)
from rlsched.schedulers import make_scheduler
from rlsched.sim import Simulator
from rlsched.sources.wfcommons import load_wfcommons
from rlsched.workload import Instance
from tests.helpers import WFCOMMONS


def test_before_anything_finished_a_task_without_an_estimate_gets_the_default_and_a_wide_spread():
    assert RuntimeModel().predict("train", None) == (pytest.approx(DEFAULT_RUNTIME_S), UNKNOWN_SIGMA)


def test_before_anything_finished_an_estimate_is_believed_with_the_prior_spread():
    seconds, sigma = RuntimeModel().predict("train", 600.0)
    assert seconds == pytest.approx(600.0) and sigma == ESTIMATE_SIGMA


def test_one_finished_task_predicts_its_kind_with_the_spread_of_a_single_sample():
    model = RuntimeModel()
    model.observe("train", None, 100.0)
    seconds, sigma = model.predict("train", None)
    # mean log 100; variance (2 * 1 + 0) / (2 + 1 - 1) = 1, times 1 + 1/1
    assert seconds == pytest.approx(100.0) and sigma == pytest.approx(math.sqrt(2.0))


def test_estimates_that_were_twice_too_short_are_corrected_and_blended_with_history():
    model = RuntimeModel()
    for _ in range(3):
        model.observe("train", 100.0, 200.0)
    seconds, sigma = model.predict("train", 100.0)
    # estimate: log 100 + bias, bias = log 2 * 3 / (3 + 2), variance 2 / (2 + 3 - 1)
    a, wa = math.log(100.0) + math.log(2.0) * 3 / 5, 1 / 0.5
    # history: log 200, variance 2 / (2 + 3 - 1) times 1 + 1/3
    b, wb = math.log(200.0), 1 / (0.5 * 4 / 3)
    assert seconds == pytest.approx(math.exp((wa * a + wb * b) / (wa + wb)))
    assert sigma == pytest.approx(math.sqrt(1 / (wa + wb)))
    assert 100.0 * 2 ** 0.6 < seconds < 200.0


def test_history_of_one_kind_does_not_move_another_kind_with_history_of_its_own():
    model = RuntimeModel()
    model.observe("prepare", None, 10.0)
    model.observe("train", None, 1000.0)
    before = model.predict("prepare", None)
    model.observe("train", None, 2000.0)
    assert model.predict("prepare", None) == before


def test_a_kind_never_seen_borrows_what_every_finished_task_took():
    model = RuntimeModel()
    model.observe("prepare", None, 10.0)
    model.observe("train", None, 1000.0)
    assert model.predict("evaluate", None).seconds == pytest.approx(100.0)  # geometric mean


def test_beyond_the_first_observations_statistics_refresh_only_when_the_count_grows_by_an_eighth():
    model = RuntimeModel()
    for i in range(EXACT_UP_TO):
        assert model.observe("train", None, 100.0 + i)[0]
    before = model.predict("train", None)
    assert model.observe("train", None, 5000.0)[0] is False  # 17 < ceil(16 * 1.125)
    assert model.predict("train", None) == before
    assert model.observe("train", None, 5000.0)[0] is True  # 18
    assert model.predict("train", None).seconds > before.seconds


def test_the_statistics_of_all_keys_refresh_each_time_their_count_doubles():
    model = RuntimeModel()
    refreshed = [n + 1 for n in range(40) if model.observe(f"k{n}", None, 10.0)[1]]
    assert refreshed == [1, 2, 4, 8, 16, 32]


def test_history_keys_name_a_task_by_category_or_by_its_id_in_its_jobs_family():
    assert history_key("sweep-3", "train") == history_key("sweep-12", "train") == "sweep/train"
    assert history_key("wf#2", "fetch") == "wf/fetch"
    assert history_key("any", "mProject_00012", "mProject") == "mProject"


def test_commands_that_differ_only_in_numbers_share_history_whatever_their_jobs_are_called():
    a = history_key("resnet-alpha", "train", command="python train.py --seed 3 --out runs/3")
    b = history_key("resnet-beta", "fit", command="python  train.py --seed 41 --out runs/41")
    assert a == b == "$ python train.py --seed # --out runs/#"
    assert history_key("x", "t", command="python train.py --model vit") != \
        history_key("x", "t", command="python train.py --model resnet")
    # a category names the kind outright, whatever the command
    assert history_key("x", "t", "finetune", command="python train.py") == "finetune"


def wfcommons_pair() -> Instance:
    jobs = tuple(j for name in ("bacass-dirt02-001.json", "blast-chameleon-small-001.json")
                 for j in load_wfcommons(WFCOMMONS / name)[0].jobs)
    return Instance("pair", jobs, source="test")


def test_the_simulators_history_replayed_from_a_store_predicts_exactly_the_same(tmp_path):
    pool = preset_pool("workstation-4")
    sim = Simulator(wfcommons_pair(), pool, seed=3, estimates=EstimateModel.parse("default"))
    scheduler = make_scheduler("share")
    view = sim.reset()
    while view is not None:
        view = sim.step(scheduler.decide(view))
    store = Store(tmp_path / "state")
    store.submit([sim.estimates.apply(sim.instance, sim.seed)])  # what the simulation told
    ids = {(r[0], r[1]): r[2] for r in store.db.execute(
        "SELECT j.name, t.task_id, t.id FROM tasks t JOIN jobs j ON t.job=j.id")}
    with store.transaction() as db:  # the episode's attempts, as a daemon would have logged them
        for a in sim.trace:
            db.execute("INSERT INTO attempts (task, device, started, ended, exit_code) "
                       "VALUES (?,?,?,?,?)", (ids[sim.table.task_ids[a.task]],
                                              None if a.device < 0 else a.device, a.start, a.end,
                                              0 if a.ok else -9))
    live = LiveBeliefs()
    live.learn(store, speed_from_models({d.index: d.model for d in pool.devices}))
    assert live.model.observations == sim._model.observations == sim.table.n_tasks
    tb = sim.table
    for key, estimate in zip(tb.history_key, tb.estimate):
        assert live.model.predict(key, estimate) == sim._model.predict(key, estimate)
    # every task has finished: both know each for what it took
    rows = [ids[key] for key in tb.task_ids]
    assert live.of(tb, rows, sim.state) == (tuple(sim._predicted), tuple(sim._spread))
    assert set(sim._spread) == {0.0}


def test_an_older_stores_work_field_is_read_as_the_estimate():
    spec = {"id": "train", "work": 300.0, "kind": "compute", "gpus": 1}
    ((key, estimate, actual),) = observations([("sweep-1", spec, 0, 10.0, 70.0, 1)],
                                               lambda device, kind: 2.0)
    assert (key, estimate, actual) == ("sweep/train", 300.0, 120.0)



def test_the_daemons_beliefs_updated_task_by_task_equal_beliefs_drawn_afresh():
    from rlsched.table import WorkloadTable
    from rlsched.view import TaskState
    from rlsched.workload import Job, Task

    jobs = [Job(f"sweep-{j}", tuple(Task(f"t{i}", 1.0, estimate=float(1 + i + j) if i < 3 else None,
                                         gpu_memory=1.0)
                                    for i in range(4))) for j in range(3)]
    table = WorkloadTable.from_jobs(jobs)
    rows = list(range(100, 100 + table.n_tasks))
    kept = LiveBeliefs()
    state = bytearray([TaskState.BLOCKED] * table.n_tasks)
    for t in (0, 5, 6, 11, 2):  # tasks finish one by one; the model learns from some
        state[t] = TaskState.DONE
        kept.measured[rows[t]] = 2.0 + t
        if t % 2:
            kept.model.observe(table.history_key[t], table.estimate[t], 2.0 + t)
        fresh = LiveBeliefs()
        fresh.model, fresh.measured = kept.model, kept.measured
        assert kept.of(table, rows, state) == fresh.of(table, rows, state)
    # the first job leaves (the daemon's table holds only jobs with work left):
    # a new table, its beliefs those of the same model, task by task
    later = WorkloadTable.from_jobs(jobs[1:])
    first = table.job_start[1]
    rows, state = rows[first:], state[first:]
    fresh = LiveBeliefs()
    fresh.model, fresh.measured = kept.model, kept.measured
    predicted, spread = kept.of(later, rows, state)
    assert (predicted, spread) == fresh.of(later, rows, state)
    for t, (key, estimate) in enumerate(zip(later.history_key, later.estimate)):
        if state[t] != TaskState.DONE:
            assert (predicted[t], spread[t]) == kept.model.predict(key, estimate)
