"""One state, two worlds: the simulator and the live daemon, given the same
jobs, the same finished and running tasks and the same telemetry, build
views that encode to the same observation, estimates, predictions and
elapsed times included. What a policy learns in simulation is what it is
shown live."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import rlsched.live.daemon as daemon_module
from envs.encoder import SCALE_OF_JOBS_IN_SYSTEM, EpisodeStatics, Maxima, encode
from rlsched.arrivals import poisson
from rlsched.estimates import EstimateModel
from rlsched.live.daemon import Daemon
from rlsched.live.store import Store
from rlsched.pool import preset_pool
from rlsched.schedulers import make_scheduler
from rlsched.sim import Simulator
from rlsched.sources.jobfile import load_jobfile
from rlsched.sources.wfcommons import load_wfcommons
from rlsched.view import ClusterView, TaskState
from rlsched.workload import Instance
from tests.helpers import WFCOMMONS

POOL = "preset:workstation-4"


def mid_episode() -> tuple[Simulator, ClusterView]:
    """Two WfCommons workflows under share, stopped where some tasks have
    finished (so the runtime model has learned), some run and some wait."""
    jobs = tuple(j for name in ("bacass-dirt02-001.json", "blast-chameleon-small-001.json")
                 for j in load_wfcommons(WFCOMMONS / name)[0].jobs)
    sim = Simulator(Instance("pair", jobs, source="test"), preset_pool("workstation-4"), seed=3,
                    estimates=EstimateModel.parse("default"))
    share = make_scheduler("share")
    view = sim.reset()
    while view is not None:
        done = view.task_state.count(TaskState.DONE)
        if done >= 6 and len(view.running) >= 2 and view.ready:
            return sim, view
        view = sim.step(share.decide(view)[:1])
    raise AssertionError("the episode never reached the state the test needs")


def replay_into_store(sim: Simulator, view: ClusterView, store: Store) -> None:
    """The simulator's state as a daemon would have stored it (times in
    seconds since the daemon's epoch, 0): the jobs that have arrived, each
    submitted when it arrived."""
    told = sim.estimates.apply(sim.instance, sim.seed)  # what the simulation told
    arrived = told.jobs[:view.n_arrived]
    store.submit([replace(told, jobs=arrived)])
    ids = {(r[0], r[1]): r[2] for r in store.db.execute(
        "SELECT j.name, t.task_id, t.id FROM tasks t JOIN jobs j ON t.job=j.id")}
    with store.transaction() as db:
        db.executemany("UPDATE jobs SET submitted=? WHERE name=?",
                       [(j.arrival, j.name) for j in arrived])
        for a in sim.trace:
            task = ids[sim.table.task_ids[a.task]]
            db.execute("INSERT INTO attempts (task, device, started, ended, exit_code) "
                       "VALUES (?,?,?,?,0)", (task, a.device, a.start, a.end))
            db.execute("UPDATE tasks SET state='done', device=?, attempts=1 WHERE id=?",
                       (a.device, task))
        for r in view.running:
            task = ids[sim.table.task_ids[r.task]]
            db.execute("INSERT INTO attempts (task, device, started) VALUES (?,?,?)",
                       (task, r.device, r.start))
            db.execute("UPDATE tasks SET state='running', device=?, attempts=1 WHERE id=?",
                       (r.device, task))


def live_view_of(sim: Simulator, sim_view: ClusterView, tmp_path, monkeypatch) -> ClusterView:
    """The daemon's view of the simulator's state (its telemetry the simulator's)."""
    store = Store(tmp_path / "state")
    daemon = Daemon(store, POOL, "share")
    replay_into_store(sim, sim_view, store)
    daemon.epoch = 0.0
    monkeypatch.setattr(daemon_module.time, "time", lambda: sim.now)
    monkeypatch.setattr(daemon, "_telemetry", lambda count, reserved: sim_view.devices)
    daemon.beliefs.learn(store, daemon._speed)
    built = daemon._view()
    assert built is not None
    return built[0]


def test_the_same_state_encodes_the_same_in_the_simulator_and_the_daemon(tmp_path, monkeypatch):
    sim, sim_view = mid_episode()
    live_view = live_view_of(sim, sim_view, tmp_path, monkeypatch)

    assert live_view.time == sim_view.time
    assert live_view.task_state == sim_view.task_state
    assert live_view.ready == sim_view.ready  # in the order they became ready
    assert sorted(live_view.running) == sorted(sim_view.running)
    assert tuple(live_view.predicted) == tuple(sim_view.predicted)
    assert tuple(live_view.spread) == tuple(sim_view.spread)
    assert live_view.job_remaining == pytest.approx(sim_view.job_remaining, rel=1e-12)
    assert live_view.job_attained == pytest.approx(sim_view.job_attained, rel=1e-12)

    maxima = Maxima()
    encoded = [encode(v, EpisodeStatics(v.table, v.pool, v.predicted), maxima).obs
               for v in (sim_view, live_view)]
    for name in encoded[0]:
        np.testing.assert_allclose(encoded[1][name], encoded[0][name], rtol=1e-6, atol=1e-7,
                                   err_msg=name)


def mid_stream() -> tuple[Simulator, ClusterView]:
    """Six WfCommons workflows arriving one after another under share,
    stopped where one job has finished, another runs and a third has not
    arrived: the simulator's table holds all six, the daemon's only the
    jobs in the system."""
    jobs = [j for name in ("bacass-dirt02-001.json", "blast-chameleon-small-001.json",
                           "fetchngs-dirt02-001.json")
            for j in load_wfcommons(WFCOMMONS / name)[0].jobs]
    pool = preset_pool("workstation-4")
    stream = poisson(jobs + [replace(j, name=f"{j.name}-again") for j in jobs], pool, 0.6,
                     np.random.default_rng(1))
    sim = Simulator(stream, pool, seed=5, estimates=EstimateModel.parse("default"))
    share = make_scheduler("share")
    view = sim.reset()
    while view is not None:
        finished = sum(1 for left in view.job_remaining[:view.n_arrived] if left <= 0)
        if finished and view.n_arrived - finished >= 2 and view.n_arrived < len(jobs) * 2 \
                and view.running and view.ready:
            return sim, view
        view = sim.step(share.decide(view)[:1])
    raise AssertionError("the stream never reached the state the test needs")


def test_a_stream_encodes_the_same_in_both_worlds_though_their_tables_differ(
        tmp_path, monkeypatch):
    """The simulator's table holds every job of the episode, finished and not
    yet arrived; the daemon's, the jobs in the system. The observation reads
    neither the finished jobs nor those to come: its time scale is that of
    the jobs in the system, the same in both."""
    sim, sim_view = mid_stream()
    live_view = live_view_of(sim, sim_view, tmp_path, monkeypatch)
    assert live_view.table.n_jobs < sim_view.n_arrived < sim_view.table.n_jobs

    maxima = Maxima()

    def encoded(version: int) -> list[dict[str, np.ndarray]]:
        return [encode(v, EpisodeStatics(v.table, v.pool, v.predicted, version), maxima).obs
                for v in (sim_view, live_view)]

    sim_obs, live_obs = encoded(SCALE_OF_JOBS_IN_SYSTEM)
    assert sim_obs["task_mask"].sum() > 10
    for name in sim_obs:
        np.testing.assert_allclose(live_obs[name], sim_obs[name], rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    # the scale before it was the table's, which the two worlds do not share
    sim_obs, live_obs = encoded(SCALE_OF_JOBS_IN_SYSTEM - 1)
    assert not np.allclose(live_obs["tasks"], sim_obs["tasks"], rtol=1e-6, atol=1e-7)


def test_the_daemons_view_counts_time_from_its_start_arrivals_included(tmp_path, monkeypatch):
    """A job submitted 5 s before the daemon's view is 5 s old in it, whatever
    the wall clock reads: arrivals and the view's time share one origin."""
    store = Store(tmp_path / "state")
    path = tmp_path / "job.yaml"
    path.write_text("name: j\ntasks:\n  - {id: a, estimate: 10, command: 'true'}\n")
    store.submit([load_jobfile(path)])
    daemon = Daemon(store, POOL, "fifo")
    submitted = store.db.execute("SELECT submitted FROM jobs").fetchone()[0]
    monkeypatch.setattr(daemon_module.time, "time", lambda: submitted + 5.0)
    view = daemon._view()[0]
    assert view.time - view.table.jobs[0].arrival == pytest.approx(5.0)


def test_a_purged_jobs_name_submitted_again_starts_unknown_not_finished(tmp_path, monkeypatch):
    store = Store(tmp_path / "state")
    path = tmp_path / "job.yaml"
    path.write_text("name: exp\ntasks:\n  - {id: train, estimate: 10, command: 'true'}\n")
    store.submit([load_jobfile(path)])
    daemon = Daemon(store, POOL, "fifo")
    (task,) = [r[0] for r in store.db.execute("SELECT id FROM tasks")]
    with store.transaction() as db:  # it ran once, 500 s
        db.execute("INSERT INTO attempts (task, device, started, ended, exit_code) "
                   "VALUES (?, 0, 0.0, 500.0, 0)", (task,))
        db.execute("UPDATE tasks SET state='done', attempts=1 WHERE id=?", (task,))
    daemon.beliefs.learn(store, daemon._speed)
    store.purge("exp")
    store.submit([load_jobfile(path)])
    view = daemon._view()[0]
    assert view.ready == (0,)
    assert view.spread[0] > 0.0  # a belief, not the old run's measurement
