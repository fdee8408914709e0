"""The live scheduler on a Ray cluster: same store, same shield, tasks pinned
to the node and GPU the policy chose, and a lost node's work retried elsewhere.

Ray runs here with fake GPUs: each node declares ``num_gpus`` and one
``gpu_slot_K`` resource per GPU, and has no NVIDIA driver, so its telemetry
actor reads the fake NVML.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from rlsched.live.daemon import Daemon
from rlsched.live.store import Store
from rlsched.schedulers import Scheduler, make_scheduler
from rlsched.view import ClusterView, Placement

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from rlsched.live.backends.ray_cluster import RayBackend, slot_resources  # noqa: E402


class Recording(Scheduler):
    """heft, remembering every placement of every answer (the control loop
    starts them all, in order) as ``(job, task, view index of the device)``."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = make_scheduler("heft")
        self.decisions: list[tuple[str, str, int]] = []

    def reset(self, seed: int = 0) -> None:
        self.inner.reset(seed)

    def _decide(self, view: ClusterView) -> list[Placement]:
        out = self.inner.decide(view)
        for p in out:
            job, task = view.table.task_ids[p.task]
            self.decisions.append((job, task, p.device))
        return out


def write_job(tmp_path, name, markers, sleeps=None):
    """a -> (b, c) -> d, all on GPUs; each task appends the CUDA_VISIBLE_DEVICES
    it saw to a marker file."""
    sleeps = sleeps or {}

    def cmd(t):
        code = (f"import os,time; time.sleep({sleeps.get(t, 0.2)}); "
                f"open('{markers}/{name}.{t}','a').write(os.environ['CUDA_VISIBLE_DEVICES']+chr(10))")
        return f"{sys.executable} -c \"{code}\""

    doc = {"name": name, "tasks": [
        {"id": "a", "command": cmd("a"), "gpu_memory": 6, "estimate": 1},
        {"id": "b", "command": cmd("b"), "after": ["a"], "gpu_memory": 10, "estimate": 2,
         "retries": 0},
        {"id": "c", "command": cmd("c"), "after": ["a"], "gpu_memory": 6, "estimate": 1},
        {"id": "d", "command": cmd("d"), "after": ["b", "c"], "gpu_memory": 2, "estimate": 1},
    ]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def submit(store, paths):
    from rlsched.sources.jobfile import load_jobfile

    store.submit([load_jobfile(p, require_work=False) for p in paths])


def attempt_rows(store):
    return store.db.execute(
        "SELECT a.*, t.task_id, j.name AS job FROM attempts a JOIN tasks t ON a.task=t.id "
        "JOIN jobs j ON t.job=j.id ORDER BY a.id").fetchall()


def run_until_idle(daemon, seconds=120, each=None):
    end = time.time() + seconds
    while daemon.tick():
        if each:
            each()
        assert time.time() < end, "the jobs did not finish in time"
        time.sleep(0.05)


@pytest.fixture
def local_ray():
    ray.init(address="local", num_cpus=2, num_gpus=4, resources=slot_resources(4),
             include_dashboard=False,
             log_to_driver=False)
    yield
    ray.shutdown()


def test_a_dag_job_runs_on_ray_pinned_where_the_policy_placed_it(tmp_path, local_ray):
    markers = tmp_path / "markers"
    markers.mkdir()
    store = Store(tmp_path / "state")
    submit(store, [write_job(tmp_path, "r1", markers), write_job(tmp_path, "r2", markers)])
    policy = Recording()
    backend = RayBackend("auto")
    daemon = Daemon(store, "local", policy, backend)
    assert [d.key for d in daemon.live] == [0, 1, 2, 3]
    run_until_idle(daemon)

    assert {j["name"]: j["state"] for j in store.status()["jobs"]} == {"r1": "done", "r2": "done"}
    rows = attempt_rows(store)
    assert len(rows) == 8 and all(r["exit_code"] == 0 for r in rows)
    # the placements recorded in the store are the policy's decisions, in order
    assert daemon.shield_fallbacks == 0
    keys = [d.key for d in daemon.live]
    assert [(r["job"], r["task_id"], r["device"]) for r in rows] == \
        [(j, t, keys[i]) for j, t, i in policy.decisions]
    # each task saw exactly the GPU of its placement (the node's slot = its key here)
    for r in rows:
        seen = (markers / f"{r['job']}.{r['task_id']}").read_text().splitlines()
        assert seen == [str(backend._where[r["device"]][1])]
    # telemetry came through the node actors, and the status shows the devices
    assert len(store.status()["devices"]) == 4
    backend.close()


def test_cancel_kills_a_task_running_on_ray(tmp_path, local_ray):
    markers = tmp_path / "markers"
    markers.mkdir()
    store = Store(tmp_path / "state")
    submit(store, [write_job(tmp_path, "c1", markers, sleeps={"a": 30})])
    backend = RayBackend("auto")
    daemon = Daemon(store, "local", "heft", backend)
    end = time.time() + 60
    while not store.db.execute("SELECT 1 FROM tasks WHERE state='running'").fetchone():
        daemon.tick()
        assert time.time() < end
        time.sleep(0.05)
    time.sleep(1.0)  # let the Ray task start its process
    store.cancel("c1")
    started = time.time()
    run_until_idle(daemon, seconds=30)
    assert time.time() - started < 20  # not the 30 s the task would sleep
    assert store.status()["jobs"][0]["state"] == "cancelled"
    row = attempt_rows(store)[0]
    assert row["ended"] is not None and row["exit_code"] != 0
    time.sleep(1.0)
    assert not (markers / "c1.a").exists()  # its process is gone, not orphaned
    backend.close()


def test_a_lost_node_takes_its_devices_out_and_its_task_is_retried_elsewhere(tmp_path):
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1, num_gpus=2, resources=slot_resources(2))
             for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        markers = tmp_path / "markers"
        markers.mkdir()
        store = Store(tmp_path / "state")
        # b runs long enough to lose its node under it; it allows no retries of
        # its own: a lost node is not the task's failure
        submit(store, [write_job(tmp_path, "n1", markers, sleeps={"b": 8})])
        backend = RayBackend(cluster.address)
        daemon = Daemon(store, "local", "heft", backend)
        assert len(daemon.live) == 4
        removed = {}

        def remove_b_node():
            if removed:
                return
            row = store.db.execute("SELECT device FROM tasks WHERE task_id='b' AND "
                                   "state='running'").fetchone()
            if row is None:
                return
            node_id = backend._where[row["device"]][0]
            node = next(n for n in nodes if n.node_id == node_id)
            removed["node"], removed["keys"] = node_id, {
                k for k, (n, _) in backend._where.items() if n == node_id}
            cluster.remove_node(node)
            removed["at"] = time.time()

        run_until_idle(daemon, seconds=240, each=remove_b_node)
        assert removed, "b never ran"
        assert store.status()["jobs"][0]["state"] == "done"
        b = [r for r in attempt_rows(store) if r["task_id"] == "b"]
        assert len(b) == 2
        assert b[0]["device"] in removed["keys"] and b[0]["exit_code"] == -9
        assert b[1]["device"] not in removed["keys"] and b[1]["exit_code"] == 0
        # the lost node's devices left the view, and no attempt went there after
        assert not removed["keys"] & {d.key for d in daemon.live}
        later = [r for r in attempt_rows(store) if r["started"] > removed["at"]]
        assert later and all(r["device"] not in removed["keys"] for r in later)
        assert (markers / "n1.b").read_text().splitlines() == \
            [str(backend._where[b[1]["device"]][1])]
        backend.close()
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_core_and_local_backend_import_nothing_of_ray(tmp_path):
    code = ("import sys, rlsched.cli, rlsched.live.daemon, rlsched.live.backends.local, "
            "rlsched.evaluation.evaluate, envs, agents; from rlsched.live.backends import open_backend; "
            "open_backend('local', 'fake:2'); print(json.dumps([m for m in sys.modules "
            "if m == 'ray' or m.startswith('ray.')]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == []


def test_a_ray_cluster_without_gpu_slots_is_one_clear_line(tmp_path):
    ray.init(address="local", num_cpus=1, num_gpus=2, include_dashboard=False,
             log_to_driver=False)
    try:
        proc = subprocess.run([sys.executable, "-m", "rlsched", "serve", "--backend", "ray",
                               "--address", "auto", "--state", str(tmp_path / "s"),
                               "--exit-when-idle"], capture_output=True, text=True,
                              timeout=120)
    finally:
        ray.shutdown()
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "gpu_slot_K" in last and "ray start" in last and "Traceback" not in proc.stderr


def test_a_restarted_serve_adopts_the_attempt_still_running_on_ray(tmp_path):
    """serve is killed with -9 while its task runs on a Ray node; a new serve on
    the same cluster adopts the attempt (a detached actor) instead of running
    the task again."""
    import os
    import signal

    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    cluster.add_node(num_cpus=1, num_gpus=2, resources=slot_resources(2))
    cluster.wait_for_nodes()
    state, marker = tmp_path / "state", tmp_path / "ran"
    job = tmp_path / "long.yaml"
    job.write_text(yaml.safe_dump({"name": "long", "tasks": [
        {"id": "t", "command": f"sleep 4; echo \"$CUDA_VISIBLE_DEVICES\" >> {marker}",
         "gpu_memory": 2, "estimate": 4}]}))
    store = Store(state)
    submit(store, [job])
    first = subprocess.Popen([sys.executable, "-m", "rlsched", "serve", "--backend", "ray",
                              "--address", cluster.address, "--tick", "0.05", "--state",
                              str(state)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not attempt_rows(store):
            assert time.time() < deadline, "serve never started the task"
            time.sleep(0.1)
        time.sleep(1.5)  # the actor is up and its command running
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert not marker.exists()  # still running, with its daemon gone
        ray.init(address=cluster.address, log_to_driver=False)
        backend = RayBackend(cluster.address)
        daemon = Daemon(store, "local", "share", backend)
        try:
            run_until_idle(daemon)
        finally:
            daemon.close()
            backend.close()
        rows = attempt_rows(store)
        assert len(rows) == 1 and rows[0]["exit_code"] == 0  # adopted, not run again
        assert marker.read_text().splitlines() == ["0"]
        assert store.status()["jobs"][0]["state"] == "done"
    finally:
        if first.poll() is None:
            first.kill()
        ray.shutdown()
        cluster.shutdown()


def test_a_two_gpu_task_lands_on_one_node_on_the_two_slots_it_was_given(tmp_path):
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1, num_gpus=2, resources=slot_resources(2))
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        markers = tmp_path / "markers"
        markers.mkdir()
        code = (f"import os,time; time.sleep(0.5); open('{markers}/train','a')"
                f".write(os.environ['CUDA_VISIBLE_DEVICES']+chr(10))")
        job = tmp_path / "gang.yaml"
        job.write_text(yaml.safe_dump({"name": "gang", "tasks": [
            {"id": "train", "command": f"{sys.executable} -c \"{code}\"", "gpus": 2,
             "gpu_memory": 6, "estimate": 1}]}))
        store = Store(tmp_path / "state")
        submit(store, [job])
        backend = RayBackend(cluster.address)
        daemon = Daemon(store, "local", "fifo", backend)
        assert len(daemon.live) == 4
        run_until_idle(daemon)
        (row,) = attempt_rows(store)
        assert row["exit_code"] == 0
        keys = [row["device"], *(int(k) for k in row["gang"].split(","))]
        nodes = {backend._where[k][0] for k in keys}
        assert len(nodes) == 1  # one node
        slots = sorted(backend._where[k][1] for k in keys)
        assert len(set(slots)) == 2
        assert (markers / "train").read_text().splitlines() == [",".join(map(str, slots))]
        backend.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
