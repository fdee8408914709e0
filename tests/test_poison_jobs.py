"""One bad job never stops the queue: names are data, never paths; a task
that cannot be launched fails alone; one daemon per state."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from rlsched.live.store import Store
from tests.helpers import RLSCHED, assert_one_line_error, rlsched, store_rows, tick_until_idle


def write_job(tmp_path, name, tasks):
    path = tmp_path / f"{hashlib.sha1(name.encode()).hexdigest()[:12]}.yaml"  # any name
    path.write_text(yaml.safe_dump({"name": name, "tasks": tasks}))
    return path


def marker_command(markers, label):
    """A task that records, once per run, that it ran and on which GPU."""
    code = (f"import os; open({str(markers / label)!r}, 'a')"
            f".write(os.environ['CUDA_VISIBLE_DEVICES'] + chr(10))")
    return f"{sys.executable} -c \"{code}\""


def files_under(root):
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


# ---------------------------------------------------------------- names are not paths

@pytest.mark.parametrize("job,task", [("../../etc", "x"), ("ok", "../../x"), (".hidden", "x"),
                                      ("-rf", "x"), ("a b", "x"), ("j", "t/u"), ("x" * 129, "t")])
def test_a_name_that_is_not_a_plain_name_is_refused_at_submit(tmp_path, job, task):
    state = tmp_path / "state"
    good = write_job(tmp_path, "fine", [{"id": "t", "command": "true"}])
    assert rlsched("submit", str(good), state=state).returncode == 0
    before = store_rows(state)
    proc = rlsched("submit", str(write_job(tmp_path, job, [{"id": task, "command": "true"}])),
               state=state)
    assert_one_line_error(proc, "is not allowed (use letters, digits")
    assert store_rows(state) == before


def test_an_old_store_holding_a_poison_job_still_serves_it_inside_the_state_dir(tmp_path):
    """A store written before the name rule may hold any name: the job runs,
    its files are named by attempt id, and the other jobs finish."""
    state = tmp_path / "deep" / "er" / "state"
    markers = tmp_path / "markers"
    markers.mkdir()
    store = Store(state)
    store.submit([_instance("good", [{"id": "t", "command": marker_command(markers, "good")}])])
    # built directly, as an older rlsched stored it: no name check on the way in
    spec = {"id": "../../x", "work": 1.0, "kind": "compute", "gpu_memory": 1.0, "gpus": 1,
            "parents": [], "data_from_parents": [], "command": marker_command(markers, "poison"),
            "env": {}, "workdir": None, "retries": 0, "timeout": None}
    with store.transaction() as db:
        job = db.execute("INSERT INTO jobs (name, priority, submitted, source) VALUES "
                         "('../../etc', 1, ?, 'old')", (time.time(),)).lastrowid
        db.execute("INSERT INTO tasks (job, task_id, position, state, spec) VALUES "
                   "(?, '../../x', 0, 'queued', ?)", (job, json.dumps(spec)))
    store.close()
    outside_before = files_under(tmp_path) - files_under(state)

    proc = rlsched("serve", "--pool", "fake:2", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    jobs = {j["name"]: j for j in json.loads(rlsched("status", "--json", state=state).stdout)["jobs"]}
    assert {n: j["state"] for n, j in jobs.items()} == {"good": "done", "../../etc": "done"}
    new_outside = (files_under(tmp_path) - files_under(state)) - outside_before
    assert new_outside == {str(markers / "good"), str(markers / "poison")}
    logs = rlsched("logs", "../../etc/../../x", state=state)  # old names still resolve
    assert logs.returncode == 0, logs.stderr


def _instance(name, tasks):
    from rlsched.sources.jobfile import _job
    from rlsched.workload import Instance

    return Instance(name, (_job({"name": name, "tasks": tasks}, "test", 0),), source="test")


# ---------------------------------------------------------------- a launch failure fails alone

def test_a_task_that_cannot_be_launched_fails_alone_with_its_reason(tmp_path):
    state, markers = tmp_path / "state", tmp_path / "markers"
    markers.mkdir()
    files = [write_job(tmp_path, f"ok{k}", [
        {"id": "a", "command": marker_command(markers, f"ok{k}.a"), "gpu_memory": 4},
        {"id": "b", "command": marker_command(markers, f"ok{k}.b"), "after": ["a"], "gpus": 0}])
        for k in range(3)]
    files.append(write_job(tmp_path, "nowhere", [
        {"id": "train", "command": "true", "workdir": str(tmp_path / "no" / "such" / "dir")},
        {"id": "eval", "command": "true", "after": ["train"]}]))
    assert rlsched("submit", *map(str, files), state=state).returncode == 0

    proc = rlsched("serve", "--pool", "fake:2", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(rlsched("status", "--json", state=state).stdout)
    states = {j["name"]: j["state"] for j in status["jobs"]}
    assert states == {"ok0": "done", "ok1": "done", "ok2": "done", "nowhere": "failed"}
    train = next(j for j in status["jobs"] if j["name"] == "nowhere")["tasks"][0]
    assert train["state"] == "failed" and train["attempts"] == 1
    assert train["reason"].startswith("could not start: FileNotFoundError")
    table = rlsched("status", state=state).stdout
    assert "reason" in table and "could not start: FileNotFoundError" in table
    assert "could not start" in rlsched("logs", "nowhere/train", state=state).stdout
    for k in range(3):
        assert (markers / f"ok{k}.a").read_text().count("\n") == 1


def test_any_launch_error_of_the_backend_ends_only_that_attempt(tmp_path):
    """An error the daemon cannot foresee (here: the backend raises) is the
    attempt's failure, retried as its ``retries`` allow; the loop goes on."""
    from rlsched.live.backends.local import LocalBackend
    from rlsched.live.daemon import Daemon

    class Flaky(LocalBackend):
        def start(self, attempt):
            if "poison" in attempt.command:
                raise PermissionError(13, "Permission denied", str(attempt.log))
            return super().start(attempt)

    store = Store(tmp_path / "state")
    store.submit([_instance("bad", [{"id": "t", "command": "echo poison", "retries": 1}]),
                  _instance("good", [{"id": "t", "command": "true"}])])
    daemon = Daemon(store, "fake:1", "fifo", Flaky("fake:1"))
    try:
        tick_until_idle(daemon)
    finally:
        daemon.close()
    jobs = {j["name"]: j for j in store.status()["jobs"]}
    assert jobs["good"]["state"] == "done"
    (bad,) = jobs["bad"]["tasks"]
    assert bad["state"] == "failed" and bad["attempts"] == 2  # one retry, then failed
    assert "PermissionError" in bad["reason"]


def test_a_task_killed_at_its_timeout_says_so_and_is_not_counted_as_lost(tmp_path):
    state = tmp_path / "state"
    job = write_job(tmp_path, "slow", [{"id": "stuck", "command": "sleep 60", "timeout": 1}])
    assert rlsched("submit", str(job), state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:1", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    (task,) = json.loads(rlsched("status", "--json", state=state).stdout)["jobs"][0]["tasks"]
    assert task == {**task, "state": "failed", "attempts": 1, "reason": "timed out after 1 s"}


# ---------------------------------------------------------------- one daemon per state

def test_two_daemons_on_one_state_run_no_task_twice(tmp_path):
    """20 jobs of 3 tasks on fake:4, two serve at once (heft and share): the
    second is refused, naming the first, and every task runs exactly once."""
    state, markers = tmp_path / "state", tmp_path / "markers"
    markers.mkdir()
    files = []
    for k in range(20):
        files.append(write_job(tmp_path, f"j{k}", [
            {"id": t, "command": f"sleep 0.1; {marker_command(markers, f'j{k}.{t}')}",
             "gpu_memory": 6, "estimate": 1, **({"after": ["a"]} if t != "a" else {})}
            for t in "abc"]))
    assert rlsched("submit", *map(str, files), state=state).returncode == 0
    daemons = [subprocess.Popen([*RLSCHED, "serve", "--pool", "fake:4", "--scheduler", name,
                                 "--tick", "0.02", "--exit-when-idle", "--state", str(state)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ("heft", "share")]
    results = [(d, *d.communicate(timeout=300)) for d in daemons]
    codes = sorted(d.returncode for d, _, _ in results)
    assert codes == [0, 2], [err for _, _, err in results]
    (winner,) = [d for d, _, _ in results if d.returncode == 0]
    (_, _, refused), = [r for r in results if r[0].returncode == 2]
    lines = refused.strip().splitlines()
    assert len(lines) == 1 and f"already served by rlsched serve (pid {winner.pid})" in lines[0]

    ran = {p.name: p.read_text().count("\n") for p in markers.iterdir()}
    assert len(ran) == 60 and set(ran.values()) == {1}  # 0 tasks ran twice
    db = sqlite3.connect(state / "rlsched.db")
    per_task = db.execute("SELECT COUNT(*) FROM attempts GROUP BY task").fetchall()
    db.close()
    assert len(per_task) == 60 and {n for (n,) in per_task} == {1}


def test_a_killed_daemon_leaves_no_lock_behind(tmp_path):
    state = tmp_path / "state"
    job = write_job(tmp_path, "long", [{"id": "t", "command": "sleep 2", "gpu_memory": 1}])
    assert rlsched("submit", str(job), state=state).returncode == 0
    first = subprocess.Popen([*RLSCHED, "serve", "--pool", "fake:1", "--tick", "0.05",
                              "--state", str(state)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # until it runs the task: it holds the lock by then
            if json.loads(rlsched("status", "--json", state=state).stdout)["jobs"][0]["state"] \
                    == "running":
                break
            time.sleep(0.1)
        second = rlsched("serve", "--pool", "fake:1", "--exit-when-idle", state=state)
        assert_one_line_error(second, f"pid {first.pid}")
    finally:
        first.kill()
        first.wait()
    again = rlsched("serve", "--pool", "fake:1", "--tick", "0.05", "--exit-when-idle", state=state)
    assert again.returncode == 0, again.stderr
    assert json.loads(rlsched("status", "--json", state=state).stdout)["jobs"][0]["state"] == "done"


# ---------------------------------------------------------------- the remaining bad inputs

def test_a_state_path_that_is_a_file_is_one_line(tmp_path):
    state = tmp_path / "state"
    state.write_text("not a directory")
    for args in (["status"], ["serve", "--pool", "fake:1", "--exit-when-idle"]):
        assert_one_line_error(rlsched(*args, state=state), "is a file, not a directory")
    assert state.read_text() == "not a directory"


@pytest.mark.parametrize("field,value,problem", [
    ("estimate", ".inf", "is not a finite duration"),
    ("estimate", ".nan", "is not a finite duration"),
    ("estimate", "-.inf", "is not a finite duration"),
    ("gpu_memory", ".nan", "is not a finite size"),
    ("timeout", "0", "timeout must be more than 0 seconds"),
    ("timeout", "-5", "timeout must be more than 0 seconds"),
    ("retries", ".inf", "is not a whole number"),
    ("gpus", "1.5", "is not a whole number"),
])
def test_non_finite_numbers_and_a_zero_timeout_are_refused(tmp_path, field, value, problem):
    state = tmp_path / "state"
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: j\ntasks:\n  - {{id: a, command: 'true', {field}: {value}}}\n")
    assert_one_line_error(rlsched("submit", str(path), state=state), str(path), problem)
    assert not state.exists()  # refused before the store is touched


def test_a_metrics_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = rlsched("serve", "--pool", "fake:1", "--exit-when-idle", "--metrics-port",
                   str(port), state=tmp_path / "state")
    assert_one_line_error(proc, f"--metrics-port {port}", "pick another port")


def test_a_database_from_a_newer_rlsched_is_refused_and_left_alone(tmp_path):
    from rlsched.live.store import SCHEMA_VERSION

    state = tmp_path / "state"
    Store(state).close()
    db = sqlite3.connect(state / "rlsched.db")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    before = (state / "rlsched.db").read_bytes()
    assert_one_line_error(rlsched("status", state=state), "written by a newer rlsched")
    assert (state / "rlsched.db").read_bytes() == before


def test_a_database_of_the_first_schema_is_upgraded_in_place(tmp_path):
    """Version 1 had no ``attempts.error``: it is added, and what was stored stays."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    db = sqlite3.connect(state / "rlsched.db")
    from rlsched.live.store import SCHEMA

    db.executescript(SCHEMA.replace(", predicted REAL, error TEXT)", ", predicted REAL)")
                     .replace(" reason TEXT,", ""))
    db.execute("INSERT INTO jobs (name, priority, submitted, source) VALUES ('old', 1, 0, 'x')")
    db.commit()
    db.close()
    store = Store(state)
    assert "error" in {r[1] for r in store.db.execute("PRAGMA table_info(attempts)")}
    assert "reason" in {r[1] for r in store.db.execute("PRAGMA table_info(tasks)")}
    assert [j["name"] for j in store.status()["jobs"]] == ["old"]


# ---------------------------------------------------------------- states that tell the truth

def test_a_failed_task_skips_its_descendants_and_fails_its_job_with_the_reason(tmp_path):
    state = tmp_path / "state"
    job = write_job(tmp_path, "broken", [
        {"id": "prepare", "command": "echo reading the data; echo no such file >&2; exit 3"},
        {"id": "train", "command": "true", "after": ["prepare"]},
        {"id": "side", "command": "true"},
        {"id": "report", "command": "true", "after": ["train", "side"]}])
    assert rlsched("submit", job, state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:1", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    (doc,) = json.loads(rlsched("status", "--json", state=state).stdout)["jobs"]
    tasks = {t["id"]: t for t in doc["tasks"]}
    assert doc["state"] == "failed"
    assert {k: t["state"] for k, t in tasks.items() if k != "side"} == {
        "prepare": "failed", "train": "skipped", "report": "skipped"}
    # independent of prepare: it ran beside it, or it had not started and never will
    assert tasks["side"]["state"] == "done" or \
        tasks["side"]["reason"] == "skipped: its job failed ('prepare')"
    assert tasks["prepare"]["reason"] == "exit code 3"
    assert tasks["prepare"]["log_tail"] == ["reading the data", "no such file"]
    assert tasks["train"]["reason"] == tasks["report"]["reason"] == "skipped: 'prepare' failed"
    shown = rlsched("status", state=state).stdout
    assert "broken/prepare failed: exit code 3" in shown and "no such file" in shown


def test_cancelling_an_ended_job_changes_nothing_and_says_so(tmp_path):
    state = tmp_path / "state"
    job = write_job(tmp_path, "quick", [{"id": "t", "command": "true"}])
    rlsched("submit", job, state=state)
    rlsched("serve", "--pool", "fake:1", "--tick", "0.05", "--exit-when-idle", state=state)
    before = store_rows(state)
    proc = rlsched("cancel", "quick", state=state)
    assert proc.returncode == 0 and "has already ended: nothing to cancel" in proc.stdout
    assert store_rows(state) == before
    assert json.loads(rlsched("status", "--json", state=state).stdout)["jobs"][0]["state"] \
        == "done"


def test_purge_removes_an_ended_job_and_its_logs_so_its_name_is_free(tmp_path):
    state = tmp_path / "state"
    job = write_job(tmp_path, "again", [{"id": "t", "command": "echo first"}])
    other = write_job(tmp_path, "other", [{"id": "t", "command": "sleep 30"}])
    rlsched("submit", job, other, state=state)
    assert_one_line_error(rlsched("purge", "other", state=state), "cancel it first")
    rlsched("cancel", "other", state=state)
    rlsched("serve", "--pool", "fake:2", "--tick", "0.05", "--exit-when-idle", state=state)
    assert_one_line_error(rlsched("submit", job, state=state), "rlsched purge again")
    logs = sorted((state / "logs").glob("attempt-*.log"))
    assert len(logs) == 1  # `again` ran; `other` was cancelled before it started
    proc = rlsched("purge", "again", state=state)
    assert proc.returncode == 0 and "purged again (1 attempt(s)" in proc.stdout
    assert not list((state / "logs").glob("attempt-*"))
    assert [j["name"] for j in json.loads(rlsched("status", "--json", state=state).stdout)
            ["jobs"]] == ["other"]
    assert rlsched("submit", job, state=state).returncode == 0  # the name is free again
    assert_one_line_error(rlsched("purge", "nope", state=state), "no such job")


def test_a_state_under_a_file_or_a_truncated_database_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    job = write_job(tmp_path, "j", [{"id": "t", "command": "true"}])
    assert_one_line_error(rlsched("submit", job, state=blocker / "state"),
                          "cannot use as the state directory")
    state = tmp_path / "state"
    rlsched("submit", write_job(tmp_path, "j", [{"id": "t", "command": "true"}]), state=state)
    db = state / "rlsched.db"
    for wal in state.glob("rlsched.db-*"):
        wal.unlink()
    db.write_bytes(db.read_bytes()[:1500])  # cut inside its pages
    before = db.read_bytes()
    for args in (["status"], ["serve", "--pool", "fake:1", "--exit-when-idle"]):
        assert_one_line_error(rlsched(*args, state=state), "rlsched.db")
    assert db.read_bytes() == before


def test_logs_says_whether_it_was_given_a_job_an_unknown_name_or_a_task_not_started(tmp_path):
    state = tmp_path / "state"
    rlsched("submit", write_job(tmp_path, "pipe", [{"id": "a", "command": "true"},
                                                   {"id": "b", "command": "true"}]), state=state)
    assert_one_line_error(rlsched("logs", "pipe", state=state), "is a job", "pipe/TASK", "a, b")
    assert_one_line_error(rlsched("logs", "no/such", state=state), "no such task")
    assert_one_line_error(rlsched("logs", "pipe/a", state=state), "has not started")


def test_a_cancelled_job_can_be_purged_and_submitted_again(tmp_path):
    state = tmp_path / "state"
    job = write_job(tmp_path, "oops", [{"id": "t", "command": "sleep 30"}])
    rlsched("submit", job, state=state)
    assert rlsched("cancel", "oops", state=state).returncode == 0
    assert rlsched("purge", "oops", state=state).returncode == 0
    assert rlsched("submit", job, state=state).returncode == 0


def test_a_task_that_fails_after_its_job_has_failed_is_failed_not_retried(tmp_path):
    """Its job failed meanwhile (another task, no retries): it runs nothing
    more, so its own failure is final and keeps its exit code."""
    state = tmp_path / "state"
    job = write_job(tmp_path, "two-fail", [
        {"id": "slow", "command": "sleep 1; exit 3", "retries": 2},
        {"id": "fast", "command": "exit 5"},
        {"id": "after", "command": "true", "after": ["slow"]}])
    rlsched("submit", job, state=state)
    proc = rlsched("serve", "--pool", "fake:2", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    (doc,) = json.loads(rlsched("status", "--json", state=state).stdout)["jobs"]
    tasks = {t["id"]: t for t in doc["tasks"]}
    assert doc["state"] == "failed"
    assert (tasks["fast"]["state"], tasks["fast"]["reason"]) == ("failed", "exit code 5")
    assert (tasks["slow"]["state"], tasks["slow"]["reason"], tasks["slow"]["attempts"]) == \
        ("failed", "exit code 3", 1)
    assert tasks["after"]["state"] == "skipped"
    shown = rlsched("status", state=state).stdout
    assert "serve is not running now" in shown


def test_logs_follow_waits_for_a_task_to_start(tmp_path):
    state = tmp_path / "state"
    rlsched("submit", write_job(tmp_path, "later", [{"id": "t", "command": "echo at last"}]),
            state=state)
    follow = subprocess.Popen([*RLSCHED, "logs", "later/t", "--follow", "--state", str(state)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # it waits, rather than failing at once
    assert follow.poll() is None
    rlsched("serve", "--pool", "fake:1", "--tick", "0.05", "--exit-when-idle", state=state)
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 0 and out.strip() == "at last" and "waiting for it" in err
    rlsched("submit", write_job(tmp_path, "never", [{"id": "t", "command": "true"}]), state=state)
    rlsched("cancel", "never", state=state)
    assert_one_line_error(rlsched("logs", "never/t", "--follow", state=state),
                          "it will not start: it is cancelled")
