"""The live scheduler end to end on a fake pool: real processes, real store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from tests.helpers import RLSCHED, rlsched, wait_for


def job_file(tmp_path, name, markers, memory=(6, 10, 6)):
    """a -> (b, c) -> d; every task appends its CUDA_VISIBLE_DEVICES to a marker."""
    def cmd(t):
        code = (f"import os,time; time.sleep(0.3); open('{markers}/{name}.{t}','a')"
                f".write(os.environ['CUDA_VISIBLE_DEVICES']+chr(10))")
        return f"{sys.executable} -c \"{code}\""
    doc = {"name": name, "tasks": [
        {"id": "a", "command": cmd("a"), "gpu_memory": memory[0], "estimate": 1},
        {"id": "b", "command": cmd("b"), "after": ["a"], "gpu_memory": memory[1], "estimate": 2},
        {"id": "c", "command": cmd("c"), "after": ["a"], "gpu_memory": memory[2], "estimate": 1},
        {"id": "d", "command": cmd("d"), "after": ["b", "c"], "gpus": 0},
    ]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def attempts(state):
    db = sqlite3.connect(state / "rlsched.db")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT a.*, t.task_id, t.spec, j.name FROM attempts a JOIN tasks t "
                          "ON a.task=t.id JOIN jobs j ON t.job=j.id").fetchall()
    finally:
        db.close()


def check_run(tmp_path, state, markers, names):
    status = json.loads(rlsched("status", "--json", state=state).stdout)
    assert {j["name"]: j["state"] for j in status["jobs"]} == {n: "done" for n in names}
    rows = attempts(state)
    by = {(r["name"], r["task_id"]): r for r in rows if r["exit_code"] == 0}
    for job in status["jobs"]:  # completion time: submission to the end of the last task
        last = max(by[(job["name"], t)]["ended"] for t in "abcd")
        assert job["finished"] == last and job["jct_s"] == pytest.approx(last - job["submitted"])
    assert "average JCT" in rlsched("status", state=state).stdout
    for n in names:
        for t in "abcd":
            lines = (markers / f"{n}.{t}").read_text().splitlines()
            assert len(lines) == 1  # ran to completion exactly once
            device = by[(n, t)]["device"]
            assert lines[0] == ("" if device is None else str(device))
        # dependency order
        assert by[(n, "b")]["started"] >= by[(n, "a")]["ended"] - 0.05
        assert by[(n, "d")]["started"] >= max(by[(n, "b")]["ended"], by[(n, "c")]["ended"]) - 0.05
    # no device was ever given more declared memory than it has (24 GiB each)
    gpu = [r for r in rows if r["device"] is not None]
    for r in gpu:
        overlap = [s for s in gpu if s["device"] == r["device"]
                   and s["started"] <= r["started"] < (s["ended"] or 1e18)]
        assert sum(json.loads(s["spec"])["gpu_memory"] for s in overlap) <= 24 + 1e-9


@pytest.mark.parametrize("scheduler", ["heft", "fifo"])
def test_three_jobs_run_in_dependency_order_on_their_gpus(tmp_path, scheduler):
    state, markers = tmp_path / "state", tmp_path / "markers"
    markers.mkdir()
    names = ["j1", "j2", "j3"]
    files = [str(job_file(tmp_path, n, markers)) for n in names]
    assert rlsched("submit", *files, state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:4", "--scheduler", scheduler, "--tick", "0.05",
               "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    check_run(tmp_path, state, markers, names)


def serve_three_jobs(tmp_path, scheduler, names):
    state, markers = tmp_path / "state", tmp_path / "markers"
    markers.mkdir()
    rlsched("submit", *[str(job_file(tmp_path, n, markers)) for n in names], state=state)
    proc = rlsched("serve", "--pool", "fake:4", "--scheduler", scheduler, "--tick", "0.05",
               "--exit-when-idle", state=state, timeout=300)
    assert proc.returncode == 0, proc.stderr
    check_run(tmp_path, state, markers, names)


def test_with_the_shipped_policy(tmp_path):
    from tests.helpers import ROOT

    serve_three_jobs(tmp_path, f"rl:{ROOT / 'checkpoints' / 'default.zip'}", ["s1", "s2", "s3"])


def test_with_a_freshly_trained_policy(tmp_path):
    from dataclasses import replace

    from agents.train import TrainConfig, train
    from tests.helpers import ROOT

    cfg = replace(TrainConfig.from_yaml(ROOT / "configs" / "quick.yaml"),
                  runs_dir=str(tmp_path / "runs"), checkpoints_dir=str(tmp_path / "ck"))
    train(cfg, progress=False)
    serve_three_jobs(tmp_path, f"rl:{tmp_path / 'ck' / 'quick' / 'final.zip'}",
                     ["r1", "r2", "r3"])


def test_kill_9_mid_run_then_restart_loses_nothing_and_runs_nothing_twice(tmp_path):
    state, markers = tmp_path / "state", tmp_path / "markers"
    markers.mkdir()
    names = ["k1", "k2", "k3"]
    rlsched("submit", *[str(job_file(tmp_path, n, markers)) for n in names], state=state)
    daemon = subprocess.Popen([*RLSCHED, "serve", "--pool", "fake:2", "--tick", "0.05",
                               "--state", str(state)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until something runs
        if any(r["ended"] is None for r in attempts(state)):
            break
        time.sleep(0.05)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait()
    assert any(r["ended"] is None for r in attempts(state))  # killed mid-run
    proc = rlsched("serve", "--pool", "fake:2", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    check_run(tmp_path, state, markers, names)


def test_serve_local_without_a_driver_is_one_clear_line(tmp_path):
    import pynvml

    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("a GPU driver is present")
    except pynvml.NVMLError:
        pass
    proc = rlsched("serve", "--pool", "local", "--exit-when-idle", state=tmp_path / "s")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "fake:N" in lines[0]


def test_metrics_on_localhost_with_dcgm_names_and_logs(tmp_path):
    import socket
    import urllib.request

    state = tmp_path / "state"
    job = tmp_path / "hello.yaml"
    job.write_text(yaml.safe_dump({"name": "hello", "tasks": [
        {"id": "say", "command": "echo hello from $CUDA_VISIBLE_DEVICES; sleep 1",
         "gpu_memory": 2, "estimate": 1}]}))
    rlsched("submit", str(job), state=state)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = subprocess.Popen([*RLSCHED, "serve", "--pool", "fake:2", "--tick", "0.05",
                               "--metrics-port", str(port), "--state", str(state)],
                              stderr=subprocess.DEVNULL)
    try:
        body = ""
        deadline = time.time() + 60  # a loaded machine starts a daemon slowly
        while time.time() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
                if 'rlsched_tasks{state="running"} 1' in body:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert 'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-fake-0000",Hostname="localhost"}' in body
        assert 'DCGM_FI_DEV_FB_USED' in body and "rlsched_decisions_total 1" in body
        assert 'rlsched_tasks{state="running"} 1' in body
        out = rlsched("logs", "hello/say", "--follow", state=state)
        assert out.stdout.strip() == "hello from 0"
    finally:
        daemon.kill()
        daemon.wait()


def test_bench_serve_prints_latencies():
    proc = subprocess.run([*RLSCHED, "bench", "serve", "--tasks", "20"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["tasks"] == 20
    assert 0 <= doc["median_ready_to_start_ms"] <= doc["p99_ready_to_start_ms"]
    assert doc["tasks_per_s"] > 0


def test_tasks_without_estimates_are_predicted_from_history(tmp_path):
    state = tmp_path / "state"
    for n in ("h1", "h2"):
        job = tmp_path / f"{n}.yaml"
        job.write_text(yaml.safe_dump({"name": n, "tasks": [
            {"id": "work", "command": "sleep 0.4", "gpu_memory": 1}]}))
        rlsched("submit", str(job), state=state)
        assert rlsched("serve", "--pool", "fake:1", "--tick", "0.05", "--exit-when-idle",
                   state=state).returncode == 0
    status = json.loads(rlsched("status", "--json", state=state).stdout)
    # the first run had no history (the fixed 60 s guess, which the error
    # leaves out: it is no prediction); the second was predicted from the
    # first's runtime, so it is nearly exact
    assert status["prediction"]["samples"] == 1
    assert status["prediction"]["mean_abs_error_s"] < 1.0
    assert status["devices"][0]["name"] == "Fake rtx-3090"
    # status shows, per task, the user's estimate (none here), what the
    # runtime model predicted when it started (h1: nothing known, the default
    # 60 s; h2: h1's runtime, on the same reference-speed GPU) and the runtime
    tasks = [j["tasks"][0] for j in status["jobs"]]
    runtimes = [t["runtime_s"] for t in tasks]
    assert all(t["estimate_s"] is None for t in tasks) and all(0.3 < r < 30 for r in runtimes)
    assert tasks[0]["predicted_s"] == pytest.approx(60.0)
    assert tasks[1]["predicted_s"] == pytest.approx(runtimes[0], rel=1e-9)
    assert [t["predicted_from"] for t in tasks] == ["default", "history"]
    text = rlsched("status", state=state).stdout
    assert all(col in text for col in ("estimate", "predicted", "from", "runtime", "history"))


def test_status_says_what_each_prediction_rests_on(tmp_path):
    """Before anything ran: the estimate alone. After a run of the same kind:
    the estimate blended with its history. A kind never seen: every kind's
    history stands in for its own."""
    state = tmp_path / "state"
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"name": "train-1", "tasks": [
        {"id": "fit", "command": "sleep 0.2", "gpu_memory": 1, "estimate": 5}]}))
    assert rlsched("submit", tmp_path / "a.yaml", state=state).returncode == 0
    before = json.loads(rlsched("status", "--json", state=state).stdout)
    assert before["jobs"][0]["tasks"][0]["predicted_from"] == "estimate"
    assert rlsched("serve", "--pool", "fake:1", "--tick", "0.05", "--exit-when-idle",
                   state=state).returncode == 0
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"jobs": [
        {"name": "train-2", "tasks": [{"id": "fit", "command": "sleep 0.2", "gpu_memory": 1,
                                       "estimate": 5}]},
        {"name": "render", "tasks": [{"id": "frame", "command": "sleep 0.2 && true",
                                      "gpu_memory": 1}]}]}))
    assert rlsched("submit", tmp_path / "b.yaml", state=state).returncode == 0
    after = {j["name"]: j["tasks"][0] for j in json.loads(
        rlsched("status", "--json", state=state).stdout)["jobs"]}
    assert after["train-1"]["predicted_from"] == "estimate"  # as its attempt started
    assert after["train-2"]["predicted_from"] == "estimate+history"
    assert after["render"]["predicted_from"] == "all history"


def test_cancel_and_timeout_kill_the_whole_process_group(tmp_path):
    state = tmp_path / "state"
    child_pid = tmp_path / "child.pid"
    # the task starts a grandchild: killing the group must take it too
    job = tmp_path / "long.yaml"
    job.write_text(yaml.safe_dump({"name": "long", "tasks": [
        {"id": "sleepy", "command": f"sleep 60 & echo $! > {child_pid}; wait",
         "gpu_memory": 1}]}))
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump({"name": "slow", "tasks": [
        {"id": "stuck", "command": "sleep 60", "timeout": 1, "retries": 0, "gpu_memory": 1}]}))
    rlsched("submit", str(job), str(slow), state=state)
    daemon = subprocess.Popen([*RLSCHED, "serve", "--pool", "fake:2", "--tick", "0.05",
                               "--state", str(state)], stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: child_pid.exists() and child_pid.read_text().strip())
        assert rlsched("cancel", "long", state=state).returncode == 0
        grandchild = int(child_pid.read_text())
        assert wait_for(lambda: not os.path.exists(f"/proc/{grandchild}") or
                         "Z" in open(f"/proc/{grandchild}/stat").read().split()[2])

        def slow_failed():
            jobs = json.loads(rlsched("status", "--json", state=state).stdout)["jobs"]
            return {j["name"]: j["state"] for j in jobs}.get("slow") == "failed"
        assert wait_for(slow_failed, 20)  # killed at its 1 s timeout, no retries left
    finally:
        daemon.kill()
        daemon.wait()
    jobs = {j["name"]: j for j in json.loads(rlsched("status", "--json", state=state).stdout)["jobs"]}
    assert jobs["long"]["state"] == "cancelled"
    for log in (state / "logs").iterdir():
        assert (log.stat().st_mode & 0o777) == 0o600


def test_the_jct_histogram_has_cumulative_buckets_sum_and_count():
    from rlsched.live.prometheus import histogram

    lines = histogram("x_seconds", "help", [30.0, 400.0, 400.0, 5000.0], (60, 900, 3600))
    assert lines[2:] == ['x_seconds_bucket{le="60"} 1', 'x_seconds_bucket{le="900"} 3',
                         'x_seconds_bucket{le="3600"} 3', 'x_seconds_bucket{le="+Inf"} 4',
                         "x_seconds_sum 5830.000", "x_seconds_count 4"]
    assert lines[1] == "# TYPE x_seconds histogram"


def test_the_metrics_endpoint_listens_on_loopback_only():
    import tempfile

    from rlsched.live.daemon import Daemon
    from rlsched.live.prometheus import serve_metrics
    from rlsched.live.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        server = serve_metrics(Daemon(Store(tmp), "fake:1", "fifo"), 0)
        try:
            assert server.server_address[0] == "127.0.0.1"
        finally:
            server.shutdown()


def test_the_readme_live_example_runs_as_written_on_a_fake_pool(tmp_path):
    """The README's job file, its commands as written, from a directory laid
    out like the repository's root: every task ends done."""
    from tests.helpers import ROOT

    (tmp_path / "examples").symlink_to(ROOT / "examples")
    state = tmp_path / "state"
    run_here = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 300}
    submit = subprocess.run([*RLSCHED, "submit", "examples/jobs/train-eval.yaml", "--state",
                             str(state)], **run_here)
    assert submit.returncode == 0, submit.stderr
    serve = subprocess.run([*RLSCHED, "serve", "--pool", "fake:4", "--tick", "0.05",
                            "--exit-when-idle", "--state", str(state)], **run_here)
    assert serve.returncode == 0, serve.stderr
    (job,) = json.loads(rlsched("status", "--json", state=state).stdout)["jobs"]
    assert job["name"] == "train-eval" and job["state"] == "done", job
    assert {t["state"] for t in job["tasks"]} == {"done"}
    logs = rlsched("logs", "train-eval/train-large", state=state)
    assert logs.returncode == 0 and "epoch 3" in logs.stdout
    assert (tmp_path / "data" / "model-large.txt").exists()


def test_status_durations_round_to_what_a_person_reads():
    from rlsched.cli import _duration

    assert _duration(299.99999999999994) == "5m 00s"  # a prediction of a 5-minute estimate
    assert _duration(42.04) == "42.0 s" and _duration(59.97) == "1m 00s"
    assert _duration(3599.6) == "1h 00m" and _duration(7325) == "2h 02m"


def test_serve_s_banner_counts_runs_of_one_model_so_a_wide_pool_stays_one_short_line():
    from rlsched.cli import _models_in_runs

    assert _models_in_runs(["a100-80gb", "rtx-4090", "rtx-3090", "rtx-3090"]) == \
        "a100-80gb, rtx-4090, 2× rtx-3090"
    assert _models_in_runs(["rtx-3090"] * 5000) == "5000× rtx-3090"
