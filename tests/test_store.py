"""The durable queue: submit, status and cancel, from the command line."""

from __future__ import annotations

import json
import stat

import pytest

from tests.helpers import ROOT, rlsched, store_rows

EXAMPLE = ROOT / "examples" / "jobs" / "train-eval.yaml"


def test_submit_then_status_lists_every_task_queued(tmp_path):
    state = tmp_path / "state"
    assert rlsched("submit", str(EXAMPLE), state=state).returncode == 0
    out = rlsched("status", "--json", state=state)
    doc = json.loads(out.stdout)
    (job,) = doc["jobs"]
    assert job["name"] == "train-eval" and job["state"] == "queued"
    assert [t["id"] for t in job["tasks"]] == ["prepare", "train-small", "train-large",
                                               "evaluate"]
    assert all(t["state"] == "queued" and t["device"] is None for t in job["tasks"])


def test_the_state_directory_and_database_are_private(tmp_path):
    state = tmp_path / "state"
    rlsched("submit", str(EXAMPLE), state=state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "rlsched.db").stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", ["cycle", "duplicate"])
def test_a_bad_job_file_exits_2_and_leaves_the_store_unchanged(tmp_path, bad):
    state = tmp_path / "state"
    rlsched("submit", str(EXAMPLE), state=state)
    before = store_rows(state)
    if bad == "cycle":
        path = tmp_path / "cycle.yaml"
        path.write_text("name: c\ntasks:\n  - {id: a, after: [b]}\n  - {id: b, after: [a]}\n")
        args = ["submit", str(path)]
    else:  # a good file, then one whose job is already queued: nothing of either
        good = tmp_path / "other.yaml"
        good.write_text("name: other\ntasks:\n  - {id: x, command: 'true'}\n")
        args = ["submit", str(good), str(EXAMPLE)]
    proc = rlsched(*args, state=state)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert store_rows(state) == before


def test_cancel_marks_unfinished_tasks_and_the_job(tmp_path):
    state = tmp_path / "state"
    rlsched("submit", str(EXAMPLE), state=state)
    assert rlsched("cancel", "train-eval", state=state).returncode == 0
    (job,) = json.loads(rlsched("status", "--json", state=state).stdout)["jobs"]
    assert job["state"] == "cancelled"
    assert {t["state"] for t in job["tasks"]} == {"cancelled"}
    proc = rlsched("cancel", "nope", state=state)
    assert proc.returncode == 2 and "no such job" in proc.stderr


def test_a_corrupt_database_is_one_clear_error(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "rlsched.db").write_bytes(b"this is not sqlite" * 100)
    proc = rlsched("status", state=state)
    assert proc.returncode == 2 and "not an rlsched database" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_rows_the_control_loop_keeps_follow_its_own_changes_and_every_other_one(tmp_path):
    """The daemon's store keeps the task rows it read and patches its own
    starts and ends into them; a change by another process (a cancel, a
    submit) is seen at the next read all the same."""
    from rlsched.live.lifecycle import TaskStatus
    from rlsched.live.store import Store
    from rlsched.workload import Instance, Job, Task

    def job(name):
        return Job(name, (Task("a", 1.0, gpu_memory=1.0, command="true"),
                          Task("b", 1.0, gpu_memory=1.0, command="true", parents=("a",))))

    ours, theirs = Store(tmp_path), Store(tmp_path)  # two connections, as serve and the CLI
    ours.submit([Instance("one", (job("j1"), job("j2")), source="test")])
    rows = ours.active_tasks(["j1", "j2"])
    attempt, _, _ = ours.start_attempt(rows[("j1", "a")], 2, None, lambda i: (tmp_path / "l",
                                                                             tmp_path / "e"))
    assert ours.active_tasks(["j1", "j2"])[("j1", "a")].status == TaskStatus.RUNNING
    (open_attempt,) = ours.open_attempts(attempt)
    ours.end_attempt(open_attempt, 0, 1.0, None, TaskStatus.DONE, 0.0)
    rows = ours.active_tasks(["j1", "j2"])
    assert rows[("j1", "a")].status == TaskStatus.DONE and rows[("j1", "a")].device == 2
    assert rows == ours._read_tasks(["j1", "j2"])  # the patched rows are what is stored
    theirs.cancel("j2")
    assert ours.active_tasks(["j1", "j2"])[("j2", "a")].status == TaskStatus.CANCELLED
    theirs.submit([Instance("two", (job("j3"),), source="test")])
    assert ours.active_tasks(["j1", "j3"])[("j3", "b")].status == TaskStatus.QUEUED


def test_a_batch_of_ends_is_stored_whole_or_not_at_all(tmp_path):
    """The daemon ends a round's attempts in one batch: another connection
    sees none of them until the batch is over, then all; an error out of it
    undoes every end already made in it, and the kept rows with them; one
    caught inside undoes its own part alone."""
    from rlsched.live.lifecycle import TaskStatus
    from rlsched.live.store import Store
    from rlsched.workload import Instance, Job, Task

    ours, theirs = Store(tmp_path), Store(tmp_path)
    ours.submit([Instance("one", tuple(Job(f"j{i}", (Task("a", 1.0, gpu_memory=1.0),))
                                       for i in range(3)), source="test")])
    names = ["j0", "j1", "j2"]
    rows = ours.active_tasks(names)
    for i, name in enumerate(names):
        ours.start_attempt(rows[(name, "a")], i, None,
                           lambda a: (tmp_path / f"{a}.log", tmp_path / f"{a}.exit"))
    first, second, third = ours.open_attempts()

    def statuses(store):
        return [store._read_tasks(names)[(n, "a")].status for n in names]

    with ours.batch():
        ours.end_attempt(first, 0, 1.0, None, TaskStatus.DONE, 0.0)
        ours.end_attempt(second, 0, 1.0, None, TaskStatus.DONE, 0.0)
        assert statuses(theirs) == [TaskStatus.RUNNING] * 3  # not yet committed
    assert statuses(theirs) == [TaskStatus.DONE, TaskStatus.DONE, TaskStatus.RUNNING]
    with pytest.raises(RuntimeError), ours.batch():
        ours.end_attempt(third, 0, 1.0, None, TaskStatus.DONE, 0.0)
        raise RuntimeError("the round failed half-way")
    assert statuses(theirs)[2] == TaskStatus.RUNNING
    assert ours.active_tasks(names)[("j2", "a")].status == TaskStatus.RUNNING
    assert [a.ref.id for a in ours.open_attempts()] == [third.ref.id]
    # a part of a batch that fails, where the failure is caught, is undone alone
    with ours.batch():
        with pytest.raises(RuntimeError), ours.transaction() as db:
            db.execute("UPDATE tasks SET state='cancelled'")
            raise RuntimeError("one part fails")
        ours.end_attempt(third, 0, 2.0, None, TaskStatus.DONE, 0.0)
    assert statuses(theirs) == statuses(ours) == [TaskStatus.DONE] * 3


def test_the_ended_attempts_kept_between_rounds_are_a_fresh_reads(tmp_path):
    """The control loop reads, every round, each active job's GPU seconds
    and each task's latest end. The store keeps them and adds its own ends
    as it makes them: at every point they are what a fresh read of the
    database gives, to the last bit (retries, a CPU task, a job read only
    later, another process's submission in between)."""
    from rlsched.live.lifecycle import TaskStatus
    from rlsched.live.store import Store
    from rlsched.workload import Instance, Job, Task

    def job(name):
        return Job(name, (Task("a", 1.0, gpu_memory=1.0), Task("cpu", 1.0, gpus=0),
                          Task("b", 1.0, gpu_memory=1.0, parents=("a",))))

    ours = Store(tmp_path)
    ours.submit([Instance("one", (job("j1"), job("j2")), source="test")])
    clock = iter(x * 0.37 for x in range(1, 1000))

    def run(name, task, device, code=0, status=TaskStatus.DONE):
        row = ours.active_tasks([name])[(name, task)]
        attempt, _, _ = ours.start_attempt(row, device, None, lambda a: (
            tmp_path / f"{a}.log", tmp_path / f"{a}.exit"))
        ours.attempts_started([(attempt, row, device, None, next(clock))])
        (a,) = ours.open_attempts(attempt)
        ended = next(clock)
        ours.end_attempt(a, code, ended, None, status, 0.0)
        return row.id, ended

    def fresh(names):
        return Store(tmp_path).ended_attempts(names)

    names = ["j1", "j2"]
    assert ours.ended_attempts(names) == fresh(names) == ({}, {})
    run("j1", "a", 0, code=1, status=TaskStatus.QUEUED)  # a failed try, retried
    retried, last_end = run("j1", "a", 1)
    run("j1", "cpu", None)
    assert ours.ended_attempts(names) == fresh(names)
    assert ours.ended_attempts(names)[1][retried] == last_end
    Store(tmp_path).submit([Instance("two", (job("j3"),), source="test")])  # another process
    names.append("j3")
    run("j2", "a", 0)
    run("j3", "a", 1)
    assert ours.ended_attempts(names) == fresh(names)
    run("j1", "b", 0)
    run("j3", "b", 0)
    kept = ours.ended_attempts(names)
    assert kept == fresh(names) and set(kept[0]) == {"j1", "j2", "j3"}
    assert kept[0]["j1"] > kept[0]["j2"] > 0  # three GPU attempts against one


def test_cancel_with_no_serve_running_says_the_running_task_is_killed_at_the_next_serve(tmp_path):
    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store
    from tests.helpers import wait_for

    state = tmp_path / "state"
    job = tmp_path / "long.yaml"
    job.write_text("name: long\ntasks:\n  - {id: run, command: 'sleep 60'}\n")
    rlsched("submit", job, state=state)
    daemon = Daemon(Store(state), "fake:2", "fifo")
    try:
        assert wait_for(lambda: daemon.tick() and daemon.store.open_attempts())
    finally:
        daemon.close()  # serve is gone; its task runs on
    proc = rlsched("cancel", "long", state=state)
    assert proc.stdout.splitlines() == [
        "cancelled long (1 task(s))",
        "no serve is running here: 1 cancelled task(s) still running are killed when serve "
        "next starts"]
    daemon = Daemon(Store(state), "fake:2", "fifo")  # the next serve kills it
    try:
        assert wait_for(lambda: not daemon.tick())
    finally:
        daemon.close()


def test_status_of_an_empty_queue_says_so_rather_than_draw_an_empty_table(tmp_path):
    state = tmp_path / "state"
    rlsched("submit", str(EXAMPLE), state=state)
    rlsched("cancel", "train-eval", state=state)
    assert rlsched("purge", "train-eval", state=state).returncode == 0
    proc = rlsched("status", state=state)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "rlsched queue: no jobs (rlsched submit FILE adds some)"
