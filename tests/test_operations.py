"""Operating a live pool: draining a GPU (or the pool) for maintenance."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from rlsched.errors import InputError
from tests.helpers import assert_one_line_error, rlsched, tick_until_idle


def parallel_job(tmp_path, name, n=4):
    """n independent tasks of 20 GiB each: one per 24 GiB GPU at a time."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "tasks": [
        {"id": f"t{i}", "command": "sleep 0.3", "gpu_memory": 20, "estimate": 1}
        for i in range(n)]}))
    return path


def devices_used(state, job):
    db = sqlite3.connect(state / "rlsched.db")
    try:
        return {r[0] for r in db.execute(
            "SELECT a.device FROM attempts a JOIN tasks t ON a.task=t.id JOIN jobs j ON "
            "t.job=j.id WHERE j.name=?", (job,))}
    finally:
        db.close()


def serve_until_idle(state):
    proc = rlsched("serve", "--pool", "fake:4", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr


def test_nothing_new_starts_on_a_drained_gpu_until_resume(tmp_path):
    state = tmp_path / "state"
    rlsched("submit", parallel_job(tmp_path, "while-drained", 6), state=state)
    assert rlsched("drain", "--gpu", "0", state=state).returncode == 0
    serve_until_idle(state)
    assert devices_used(state, "while-drained") == {1, 2, 3}
    status = json.loads(rlsched("status", "--json", state=state).stdout)
    assert status["drained"] == [0]
    assert [d["drained"] for d in status["devices"]] == [True, False, False, False]
    assert "DRAINED" in rlsched("status", state=state).stdout

    assert "resumed GPU 0" in rlsched("resume", "--gpu", "0", state=state).stdout
    rlsched("submit", parallel_job(tmp_path, "after-resume"), state=state)
    serve_until_idle(state)
    assert devices_used(state, "after-resume") == {0, 1, 2, 3}


def test_a_drained_pool_starts_nothing_and_waits(tmp_path):
    state = tmp_path / "state"
    rlsched("submit", parallel_job(tmp_path, "held", 2), state=state)
    assert rlsched("drain", state=state).returncode == 0
    from rlsched.live.daemon import Daemon  # serve would wait for ever: tick it 20 times
    from rlsched.live.store import Store

    store = Store(state)
    daemon = Daemon(store, "fake:4", "heft")
    try:
        for _ in range(20):
            assert daemon.tick()  # work is queued, so it is not idle
    finally:
        daemon.close()
    assert devices_used(state, "held") == set()
    assert "resumed every drain (1 drain(s) ended)" in rlsched("resume", state=state).stdout
    serve_until_idle(state)
    assert json.loads(rlsched("status", "--json", state=state).stdout)["jobs"][0]["state"] \
        == "done"
    assert_one_line_error(rlsched("drain", "--gpu", "-1", state=state), "a GPU is 0 or more")


def test_a_task_no_gpu_fits_is_flagged_and_once_the_pool_is_known_refused(tmp_path):
    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store

    state = tmp_path / "state"
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"name": "big", "tasks": [
        {"id": "train", "command": "true", "gpu_memory": "200GiB"}]}))
    assert rlsched("submit", big, state=state).returncode == 0  # no serve yet: pool unknown
    daemon = Daemon(Store(state), "fake:4", "heft")
    try:
        for _ in range(3):
            daemon.tick()
    finally:
        daemon.close()
    (job,) = json.loads(rlsched("status", "--json", state=state).stdout)["jobs"]
    assert job["tasks"][0]["state"] == "queued"
    assert job["tasks"][0]["reason"] == ("unschedulable: needs 200 GiB of GPU memory; the "
                                         "largest GPU of the pool has 24 GiB")
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(big.read_text().replace("name: big", "name: bigger"))
    assert_one_line_error(rlsched("submit", bigger, state=state),
                          "needs 200 GiB of GPU memory but the largest device")


def test_queue_waits_count_from_when_a_task_could_start(tmp_path):

    from rlsched.live.daemon import Daemon
    from rlsched.live.prometheus import render
    from rlsched.live.store import Store

    state = tmp_path / "state"
    chain = tmp_path / "chain.yaml"
    chain.write_text(yaml.safe_dump({"name": "chain", "tasks": [
        {"id": "a", "command": "sleep 1", "gpu_memory": 1},
        {"id": "b", "command": "true", "gpu_memory": 1, "after": ["a"]}]}))
    rlsched("submit", chain, state=state)
    store = Store(state)
    daemon = Daemon(store, "fake:1", "fifo")
    try:
        tick_until_idle(daemon)
        waits = store.queue_waits()
        body = render(daemon)
    finally:
        daemon.close()
    # b waited from a's end, not from submission (which was over a second before)
    assert len(waits) == 2 and all(0 <= w < 1.0 for w in waits), waits
    assert "rlsched_queue_wait_seconds_count 2" in body


def test_a_process_on_a_gpu_it_was_not_given_is_reported(tmp_path):
    """The fake NVML is told that a task's process sits on the other GPU (as
    code that ignores CUDA_VISIBLE_DEVICES would): status and the metrics say so."""
    import time

    from rlsched.live.daemon import Daemon
    from rlsched.live.prometheus import render
    from rlsched.live.store import Store

    state = tmp_path / "state"
    job = tmp_path / "stray.yaml"
    job.write_text(yaml.safe_dump({"name": "stray", "tasks": [
        {"id": "t", "command": "sleep 30", "gpu_memory": 2}]}))
    rlsched("submit", job, state=state)
    store = Store(state)
    daemon = Daemon(store, "fake:2", "fifo")
    try:
        deadline = time.time() + 60
        while not store.open_attempts() or store.open_attempts()[0].ref.pid is None:
            daemon.tick()
            assert time.time() < deadline
        (attempt,) = store.open_attempts()
        daemon.tick()
        assert daemon.misplaced == set()  # where it was placed: nothing to say
        other = 1 - attempt.ref.device
        daemon.backend.fake.declare(attempt.ref.pid, other, 2.0)
        daemon.tick()
        daemon.tick()  # reported once, however many rounds see it
        assert daemon.misplaced == {(attempt.ref.id, other)}
        assert "rlsched_misplaced_processes_total 1" in render(daemon)
        store.cancel("stray")
        while daemon.tick() and time.time() < deadline:
            time.sleep(0.02)
    finally:
        daemon.close()
    (seen,) = store.status()["misplaced"]
    assert seen | {"time": 0} == {"job": "stray", "task": "t", "attempt": attempt.ref.id,
                                  "given": attempt.ref.device, "seen": other,
                                  "pid": attempt.ref.pid, "time": 0}
    assert f"saw its process {attempt.ref.pid} on GPU {other}" in rlsched("status",
                                                                           state=state).stdout


def test_the_grafana_dashboard_queries_only_metrics_that_serve_exports(tmp_path):
    import re

    from rlsched.live.daemon import Daemon
    from rlsched.live.prometheus import render
    from rlsched.live.store import Store
    from tests.helpers import ROOT

    dashboard = json.loads((ROOT / "examples" / "grafana" / "rlsched-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = {m for e in exprs for m in re.findall(r"\b(?:DCGM_FI_\w+|rlsched_\w+)", e)}
    daemon = Daemon(Store(tmp_path / "state"), "fake:1", "fifo")
    try:
        daemon.tick()
        body = render(daemon).splitlines()
        exported = {line.split("{")[0].split(" ")[0] for line in body
                    if line and not line.startswith("#")}
        exported |= {line.split()[2] for line in body if line.startswith("# TYPE")}
    finally:
        daemon.close()
    assert len(dashboard["panels"]) >= 8 and queried
    assert queried <= exported, queried - exported


def test_a_task_exit_and_a_submit_wake_the_daemon_long_before_its_tick(tmp_path):
    """With a 30 s tick, the next task still starts at once after its parent
    ends, and a job submitted to an idle daemon starts at once."""
    import subprocess
    import time

    from tests.helpers import RLSCHED, wait_for

    state = tmp_path / "state"
    chain = tmp_path / "chain.yaml"
    chain.write_text(yaml.safe_dump({"name": "chain", "tasks": [
        {"id": "a", "command": "sleep 0.5", "gpu_memory": 1},
        {"id": "b", "command": "true", "gpu_memory": 1, "after": ["a"]}]}))
    later = tmp_path / "later.yaml"
    later.write_text(yaml.safe_dump({"name": "later", "tasks": [
        {"id": "t", "command": "true", "gpu_memory": 1}]}))
    rlsched("submit", chain, state=state)
    daemon = subprocess.Popen([*RLSCHED, "serve", "--pool", "fake:1", "--tick", "30",
                               "--state", str(state)], stderr=subprocess.DEVNULL)

    def jobs():
        return {j["name"]: j for j in json.loads(rlsched("status", "--json",
                                                         state=state).stdout)["jobs"]}
    try:
        assert wait_for(lambda: jobs()["chain"]["state"] == "done")
        assert wait_for(lambda: (state / "wake.sock").exists())
        submitted = time.time()
        rlsched("submit", later, state=state)
        assert wait_for(lambda: jobs()["later"]["state"] == "done")
        woke_in = time.time() - submitted
    finally:
        daemon.kill()
        daemon.wait()
    db = sqlite3.connect(state / "rlsched.db")
    (a_end, b_start), = db.execute(
        "SELECT (SELECT ended FROM attempts a JOIN tasks t ON a.task=t.id WHERE t.task_id='a'), "
        "(SELECT started FROM attempts a JOIN tasks t ON a.task=t.id WHERE t.task_id='b')")
    db.close()
    assert b_start - a_end < 5.0  # a tick would be 30 s; a loaded machine takes a while
    assert woke_in < 15.0


def test_after_serve_ends_status_shows_every_gpu_idle(tmp_path):
    """Telemetry is published every round, busy or idle: the last round saw
    the last task end, so no GPU is left showing it."""
    from tests.helpers import ROOT

    state = tmp_path / "state"
    rlsched("submit", ROOT / "examples" / "jobs" / "hello-gpus.yaml", state=state)
    serve_until_idle(state)
    devices = json.loads(rlsched("status", "--json", state=state).stdout)["devices"]
    assert len(devices) == 4
    assert [(d["tasks"], d["utilization"], d["memory_used"]) for d in devices] == [(0, 0, 0)] * 4


def test_serve_exit_when_idle_stops_on_a_task_no_gpu_will_ever_take(tmp_path):
    # a script's serve --exit-when-idle must end: the rest runs, then one line
    # names the task that can never start, exit 2
    state = tmp_path / "state"
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump({"jobs": [
        {"name": "big", "tasks": [{"id": "prep", "command": "true"},
                                  {"id": "train", "command": "true", "gpu_memory": "200GiB",
                                   "after": ["prep"]},
                                  {"id": "eval", "command": "true", "after": ["train"]}]},
        {"name": "small", "tasks": [{"id": "run", "command": "true"}]}]}))
    assert rlsched("submit", jobs, state=state).returncode == 0  # no serve yet: pool unknown
    proc = rlsched("serve", "--pool", "fake:4", "--tick", "0.05", "--exit-when-idle",
                   state=state, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "task big/train can never start on this pool" in last
    assert "needs 200 GiB of GPU memory" in last
    states = {(j["name"], t["id"]): t["state"] for j in json.loads(
        rlsched("status", "--json", state=state).stdout)["jobs"] for t in j["tasks"]}
    assert states == {("big", "prep"): "done", ("big", "train"): "queued",
                      ("big", "eval"): "queued", ("small", "run"): "done"}


def test_a_cluster_whose_nodes_come_and_go_is_never_called_stranded(tmp_path):
    # a task no node of the cluster can take now may fit the next node to join
    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store

    state = tmp_path / "state"
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"name": "big", "tasks": [
        {"id": "train", "command": "true", "gpu_memory": "200GiB"}]}))
    assert rlsched("submit", big, state=state).returncode == 0
    daemon = Daemon(Store(state), "fake:4", "heft")
    try:
        daemon.tick()
        with pytest.raises(InputError, match="can never start on this pool"):
            daemon._stranded()
        daemon.backend.fixed_devices = False  # as a Ray cluster's
        assert daemon._stranded() is False
    finally:
        daemon.close()
