"""The simulator predicts the live run: the same ten jobs, run live by serve
on a fake pool and then replayed in the simulator (exported with the
runtimes they had, all queued at once as they were when serve started),
start in the same order, on the same GPUs, and end at the same times, to
within a dispatch's latency. The end-to-end form of the sim/live parity."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import yaml

from rlsched.arrivals import batch
from rlsched.estimates import EstimateModel
from rlsched.pool import identical_pool
from rlsched.schedulers import make_scheduler
from rlsched.sim import Simulator
from rlsched.sources.jobfile import load_jobfile
from tests.helpers import rlsched

#: apart by more than this in the simulator, two starts must come in the same order live
CLEAR_S = 0.15


def ten_jobs(directory):
    rng = np.random.default_rng(4)
    for i in range(10):
        work = round(float(rng.uniform(0.3, 1.2)), 2)
        estimate = round(work * float(rng.lognormal(0.0, 0.7)), 2)
        (directory / f"job-{i}.yaml").write_text(yaml.safe_dump({"name": f"job-{i}", "tasks": [
            {"id": "t", "command": f"sleep {work}", "gpu_memory": 1, "estimate": estimate}]}))


def live_run(tmp_path, scheduler):
    """``{job: (start, end, device)}`` from serve's start, and the export."""
    jobs, state = tmp_path / "jobs", tmp_path / "state"
    jobs.mkdir()
    ten_jobs(jobs)
    assert rlsched("submit", *sorted(jobs.iterdir()), state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:4", "--scheduler", scheduler, "--tick", "0.02",
                   "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    assert rlsched("export", "--out", tmp_path / "run.yaml", state=state).returncode == 0
    db = sqlite3.connect(state / "rlsched.db")
    try:
        (began,) = db.execute("SELECT MIN(time) FROM events WHERE kind='serve'").fetchone()
        rows = db.execute("SELECT j.name, a.started, a.ended, a.device FROM attempts a JOIN "
                          "tasks t ON a.task=t.id JOIN jobs j ON t.job=j.id WHERE a.exit_code=0")
        return {n: (s - began, e - began, d) for n, s, e, d in rows}, tmp_path / "run.yaml"
    finally:
        db.close()


def simulated_run(path, scheduler):
    """``{job: (start, end, device)}`` and the order of placements."""
    inst = batch(load_jobfile(path))  # every job was queued when serve started
    sim = Simulator(inst, identical_pool(4), estimates=EstimateModel.parse("default"))
    policy = make_scheduler(scheduler)
    order = []
    view = sim.reset()
    while view is not None:
        placements = policy.decide(view)[:1]  # one at a time, as the daemon places
        order += [sim.table.task_ids[p.task][0] for p in placements]
        view = sim.step(placements)
    return {sim.table.task_ids[a.task][0]: (a.start, a.end, a.device) for a in sim.trace}, order


@pytest.mark.parametrize("scheduler", ["fifo", "share"])
def test_the_simulator_predicts_the_live_run(tmp_path, scheduler):
    live, exported = live_run(tmp_path, scheduler)
    sim, order = simulated_run(exported, scheduler)
    assert set(live) == set(sim)
    for a in sim:
        for b in sim:
            if sim[b][0] - sim[a][0] > CLEAR_S:
                assert live[a][0] < live[b][0], f"{a} started after {b} live"
    for job, (_, end, _) in sim.items():
        assert live[job][1] == pytest.approx(end, rel=0.05, abs=0.1), job  # its JCT
    first = [j for j in order if sim[j][0] == 0.0]
    assert sorted(first, key=lambda j: live[j][0]) == first  # placed in the same order
    assert [live[j][2] for j in first] == [sim[j][2] for j in first]  # on the same GPUs
