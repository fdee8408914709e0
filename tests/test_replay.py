"""Your own pool's history as a workload: what serve ran, replayed in the
simulator (``history:STATE``) and exported as a job file."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from rlsched.live.replay import as_jobfile, load_history
from rlsched.runtime_model import history_key
from rlsched.sources.jobfile import load_jobfile
from tests.helpers import ROOT, assert_one_line_error, rlsched


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Three small jobs that serve ran to the end on a fake pool of four
    reference GPUs (each of speed 1), and a fourth that failed."""
    root = tmp_path_factory.mktemp("replay")
    state = root / "state"
    for name, sleeps in (("prep-1", (0.2, 0.5)), ("prep-2", (0.3, 0.4)), ("train", (0.6,))):
        tasks = [{"id": f"t{i}", "command": f"sleep {s}", "gpu_memory": 1, "estimate": 1,
                  **({"after": [f"t{i - 1}"]} if i else {})} for i, s in enumerate(sleeps)]
        (root / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "tasks": tasks}))
        assert rlsched("submit", root / f"{name}.yaml", state=state).returncode == 0
    (root / "bad.yaml").write_text(yaml.safe_dump({"name": "bad", "tasks": [
        {"id": "x", "command": "exit 3", "gpus": 0}]}))
    assert rlsched("submit", root / "bad.yaml", state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:4", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    return root, state


def recorded(state):
    db = sqlite3.connect(state / "rlsched.db")
    try:
        return {(r[0], r[1]): r[2] for r in db.execute(
            "SELECT j.name, t.task_id, a.ended - a.started FROM attempts a JOIN tasks t ON "
            "a.task=t.id JOIN jobs j ON t.job=j.id WHERE a.exit_code=0")}
    finally:
        db.close()


def test_the_finished_jobs_replay_with_the_runtimes_they_had(served):
    _, state = served
    instance = load_history(state)
    assert [j.name for j in instance.jobs] == ["prep-1", "prep-2", "train"]  # not the failed one
    took = recorded(state)
    for job in instance.jobs:
        for t in job.tasks:
            assert t.work == pytest.approx(took[(job.name, t.id)], rel=1e-12)  # speed 1 GPUs
            assert t.estimate == 1.0
    assert instance.jobs[0].arrival == 0.0
    assert all(b.arrival >= a.arrival for a, b in zip(instance.jobs, instance.jobs[1:]))


def test_evaluate_replays_the_history_at_its_own_arrival_times(served, tmp_path):
    _, state = served
    out = tmp_path / "e.json"
    proc = rlsched("evaluate", "--workload", f"history:{state}", "--pool", "identical:4",
                   "--arrivals", "trace", "--scheduler", "fifo,sjf,share", "--json", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert {r["instance"] for r in doc["results"]} == {"history"}
    assert len(doc["results"]) == 3


def test_export_writes_a_job_file_that_replays_the_same(served, tmp_path):
    _, state = served
    out = tmp_path / "month.yaml"
    proc = rlsched("export", "--out", out, state=state)
    assert proc.returncode == 0, proc.stderr
    assert "3 finished job(s)" in proc.stdout
    again = load_jobfile(out)
    assert [(j.name, j.arrival, [(t.id, t.work, t.estimate, t.parents) for t in j.tasks])
            for j in again.jobs] == \
        [(j.name, j.arrival, [(t.id, t.work, t.estimate, t.parents) for t in j.tasks])
         for j in load_history(state).jobs]
    assert yaml.safe_load(out.read_text()) == as_jobfile(load_history(state))


def test_a_state_that_is_not_a_store_is_one_line(tmp_path):
    (tmp_path / "rlsched.db").write_text("not a database")
    proc = rlsched("evaluate", "--workload", f"history:{tmp_path}", "--pool", "identical:2",
                   "--arrivals", "trace")
    assert_one_line_error(proc, "not an rlsched database")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = rlsched("export", "--out", tmp_path / "x.yaml", state=empty)
    assert_one_line_error(proc, "no rlsched state here")


def test_the_loop_serve_replay_train_and_serve_the_policy_trained_on_your_history(
        served, tmp_path):
    # 1-2: serve ran the jobs (the fixture) and history: replays them (above);
    # 3: a policy trains on that history
    _, state = served
    config = yaml.safe_load((ROOT / "configs" / "quick.yaml").read_text())
    config.update(name="mine", runs_dir=str(tmp_path / "runs"),
                  checkpoints_dir=str(tmp_path / "ck"), kinds=[
                      {"workload": f"history:{state}", "pool": "identical:4",
                       "arrivals": "trace", "perturb": "none", "teacher": "share"}])
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = rlsched("train", "--config", path, "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr
    checkpoint = tmp_path / "ck" / "mine" / "final.zip"
    assert checkpoint.exists()
    # 4: serve runs new jobs with it, on the same pool (a copy of its state)
    state = Path(shutil.copytree(state, tmp_path / "state"))
    (tmp_path / "next.yaml").write_text(yaml.safe_dump({"name": "prep-3", "tasks": [
        {"id": "t0", "command": "sleep 0.2", "gpu_memory": 1},
        {"id": "t1", "command": "sleep 0.2", "gpu_memory": 1, "after": ["t0"]}]}))
    assert rlsched("submit", tmp_path / "next.yaml", state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:4", "--scheduler", f"rl:{checkpoint}", "--tick",
                   "0.05", "--exit-when-idle", state=state, timeout=300)
    assert proc.returncode == 0, proc.stderr
    jobs = {j["name"]: j["state"] for j in json.loads(
        rlsched("status", "--json", state=state).stdout)["jobs"]}
    assert jobs["prep-3"] == "done"


def test_a_failed_attempt_replays_as_what_it_was_before_the_task_it_was_an_attempt_of(tmp_path):
    state, marker = tmp_path / "state", tmp_path / "tried"
    (tmp_path / "flaky.yaml").write_text(yaml.safe_dump({"name": "flaky", "tasks": [
        {"id": "prep", "command": "sleep 0.1", "gpus": 0},
        {"id": "train", "command": f"sleep 0.3; test -f {marker} || (touch {marker}; exit 1)",
         "after": ["prep"], "retries": 1, "gpu_memory": 2, "estimate": 1}]}))
    assert rlsched("submit", tmp_path / "flaky.yaml", state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:2", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    (job,) = load_history(state).jobs
    assert [t.id for t in job.tasks] == ["prep", "train.failed-1", "train"]
    failed, train = job.tasks[1], job.tasks[2]
    assert failed.parents == ("prep",) and train.parents == ("train.failed-1",)
    assert failed.gpus == train.gpus == 1 and failed.gpu_memory == 2
    # a failed attempt is history of its own: its task's key, marked failed
    assert failed.work == pytest.approx(0.3, abs=0.25)
    assert failed.category == history_key("flaky", "train", None, train.command) + ".failed"
    # it exports and loads back as a job file
    out = tmp_path / "month.yaml"
    assert rlsched("export", "--out", out, state=state).returncode == 0
    assert [t.id for t in load_jobfile(out).jobs[0].tasks] == ["prep", "train.failed-1", "train"]
