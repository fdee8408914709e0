"""Chaos: `serve` killed with -9 again and again while 30 jobs run. Nothing is
lost, nothing runs twice, dependencies hold, every task sees its own GPU.

Slow (a minute or two) and timing-dependent by nature, so it is kept out of
the default run: ``make chaos`` runs it and prints its numbers as JSON.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest
import yaml

from tests.helpers import RLSCHED, rlsched

pytestmark = pytest.mark.chaos

JOBS = 30
KILLS = 12


def chaos_jobs(tmp_path, markers, rng):
    """30 jobs of 3-5 tasks, each task after one or two earlier ones of its job;
    each task sleeps a little, then appends its CUDA_VISIBLE_DEVICES to a marker."""
    files = []
    for j in range(JOBS):
        n = rng.randint(3, 5)
        tasks = []
        for i in range(n):
            parents = sorted(rng.sample(range(i), min(i, rng.randint(1, 2)))) if i else []
            marker = markers / f"j{j}.t{i}"
            tasks.append({
                "id": f"t{i}", "after": [f"t{p}" for p in parents], "estimate": 1,
                "gpu_memory": rng.choice([2, 4, 8]),
                "command": f"sleep {rng.uniform(0.2, 0.6):.2f}; "
                           f"echo \"$CUDA_VISIBLE_DEVICES\" >> {marker}"})
        path = tmp_path / f"j{j}.yaml"
        path.write_text(yaml.safe_dump({"name": f"j{j}", "tasks": tasks}))
        files.append(path)
    return files


def test_kill_9_of_serve_at_random_moments_loses_nothing_and_runs_nothing_twice(tmp_path):
    rng = random.Random(20261201)
    state, markers = tmp_path / "state", tmp_path / "markers"
    markers.mkdir()
    assert rlsched("submit", *chaos_jobs(tmp_path, markers, rng), state=state).returncode == 0
    serve = [*RLSCHED, "serve", "--pool", "fake:4", "--tick", "0.05", "--state", str(state)]
    kills = 0
    deadline = time.time() + 600
    while kills < KILLS and time.time() < deadline:
        daemon = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 2.5))  # the daemon takes about a second to start
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait()
        kills += 1
    final = subprocess.run([*serve, "--exit-when-idle"], capture_output=True, text=True,
                           timeout=600)
    assert final.returncode == 0, final.stderr

    db = sqlite3.connect(state / "rlsched.db")
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT a.*, t.task_id, t.spec, t.state, j.name FROM attempts a JOIN tasks "
                      "t ON a.task=t.id JOIN jobs j ON t.job=j.id").fetchall()
    states = db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall()
    db.close()
    tasks = sum(n for _, n in states)
    ran = {p.name: p.read_text().splitlines() for p in markers.iterdir()}
    doubled = sum(len(lines) > 1 for lines in ran.values())
    lost = sum(r["exit_code"] == -9 for r in rows)
    print(json.dumps({"kills": kills, "jobs": JOBS, "tasks": tasks, "attempts": len(rows),
                      "lost_attempts": lost, "ran_twice": doubled,
                      "never_ran": tasks - len(ran)}))

    assert kills >= 10
    assert dict(states) == {"done": tasks}
    assert len(ran) == tasks and doubled == 0  # every task ran to its end exactly once
    done = {(r["name"], r["task_id"]): r for r in rows if r["exit_code"] == 0}
    assert len(done) == tasks
    for (job, task), r in done.items():
        assert ran[f"{job}.{task}"] == [str(r["device"])]  # it saw the GPU it was given
        for parent in json.loads(r["spec"])["parents"]:  # and started after its parents
            assert r["started"] >= done[(job, parent)]["ended"] - 0.05
