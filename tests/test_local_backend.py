"""The local backend tells a finished attempt from a lost one, whatever the timing."""

from __future__ import annotations

import stat
from pathlib import Path

from rlsched.live import executor
from rlsched.live.backends.local import LocalBackend
from rlsched.live.lifecycle import LOST, AttemptRef
from tests.helpers import tick_until_idle, wait_for


def test_an_attempt_that_ends_between_the_two_looks_is_finished_not_lost(monkeypatch):
    """The backend reads the exit file (none yet), then finds the process
    gone: the attempt wrote its code and exited in between. Taking that for
    a lost attempt would run a finished task again, which a loaded machine
    did once in a benchmark of 500 tasks."""
    codes = iter([None, 0])
    monkeypatch.setattr(executor, "exit_code", lambda path: next(codes))
    monkeypatch.setattr(executor, "alive", lambda pid: False)
    backend = LocalBackend("fake:1")
    ref = AttemptRef(1, 4242, 0, Path("a.log"), Path("a.exit"), 1.0)
    assert backend.exit_code(ref) == 0


def test_an_attempt_gone_without_a_code_is_lost(monkeypatch):
    monkeypatch.setattr(executor, "exit_code", lambda path: None)
    monkeypatch.setattr(executor, "alive", lambda pid: False)
    backend = LocalBackend("fake:1")
    ref = AttemptRef(1, 4242, 0, Path("a.log"), Path("a.exit"), 1.0)
    assert backend.exit_code(ref) == LOST


def test_a_running_attempt_has_no_code_yet(monkeypatch):
    monkeypatch.setattr(executor, "exit_code", lambda path: None)
    monkeypatch.setattr(executor, "alive", lambda pid: True)
    backend = LocalBackend("fake:1")
    ref = AttemptRef(1, 4242, 0, Path("a.log"), Path("a.exit"), 1.0)
    assert backend.exit_code(ref) is None


def test_the_wrapper_makes_its_files_private_and_the_command_keeps_the_daemons_umask(tmp_path):
    """The daemon creates only the log; the attempt's shell writes its pid
    and exit files itself, readable by the owner alone, while the command
    runs under the umask the daemon had (files it makes are the user's to
    share)."""
    import os

    from tests.helpers import wait_for

    old = os.umask(0o022)
    try:
        launched = executor.launch("umask; touch made", None, tmp_path / "a.log",
                                   tmp_path / "a.exit", workdir=str(tmp_path))
    finally:
        os.umask(old)
    assert wait_for(lambda: executor.exit_code(launched.exit_file) is not None)
    assert executor.exit_code(launched.exit_file) == 0
    assert executor.recorded_pid(launched.exit_file) == launched.pid
    assert (tmp_path / "a.log").read_text().strip() == "0022"
    assert stat.S_IMODE((tmp_path / "made").stat().st_mode) == 0o644
    for private in ("a.log", "a.exit", "a.exit.pid"):
        assert stat.S_IMODE((tmp_path / private).stat().st_mode) == 0o600


def test_a_round_of_starts_records_when_each_process_was_launched(tmp_path, monkeypatch):
    """A round commits all its attempts before it launches any, so the time
    an attempt is stored with is the time its own process was launched, not
    the round's commit: with each launch taking 50 ms, four tasks started in
    one round are recorded 50 ms apart, and each with its pid."""
    import time

    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store
    from rlsched.workload import Instance, Job, Task

    store = Store(tmp_path / "state")
    store.submit([Instance("four", (Job("four", tuple(
        Task(f"t{i}", 1.0, gpu_memory=20.0, command="sleep 5") for i in range(4))),),
        source="test")])
    daemon = Daemon(store, "fake:4", "fifo")
    real_launch = executor.launch

    def slow_launch(*args, **kwargs):
        time.sleep(0.05)
        return real_launch(*args, **kwargs)

    monkeypatch.setattr(executor, "launch", slow_launch)
    try:
        daemon.tick()
        rows = store.db.execute("SELECT started, pid FROM attempts ORDER BY started").fetchall()
    finally:
        for (pid,) in store.db.execute("SELECT pid FROM attempts").fetchall():
            executor.kill(pid)
        daemon.close()
    assert len(rows) == 4 and all(pid for _, pid in rows)
    gaps = [b[0] - a[0] for a, b in zip(rows, rows[1:])]
    assert all(gap >= 0.04 for gap in gaps), gaps


def test_each_task_runs_its_own_command_when_a_job_lists_children_first(tmp_path):
    """A job file may list a task before its parents; the view orders tasks
    by job arrival and dependencies, so the command started for each view
    index must be looked up by the task, not by the file's order. Here the
    child's command fails unless its parent's ran first."""

    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store
    from rlsched.workload import Instance, Job, Task

    def job(name, *tasks):
        return Instance(name, (Job(name, tasks),), source="test")

    store = Store(tmp_path / "state")
    store.submit([
        job("late", Task("last", 1.0, gpu_memory=1.0, parents=("first",),
                         command=f"test -f {tmp_path}/late.first && touch {tmp_path}/late.last"),
            Task("first", 1.0, gpu_memory=1.0, command=f"touch {tmp_path}/late.first")),
        job("early", Task("only", 1.0, gpu_memory=1.0, command=f"touch {tmp_path}/early.only"))])
    daemon = Daemon(store, "fake:2", "fifo")
    try:
        tick_until_idle(daemon)
    finally:
        daemon.close()
    assert {p.name for p in tmp_path.glob("*.*")} >= {"late.first", "late.last", "early.only"}


def test_a_round_asks_again_only_while_a_ready_task_could_still_start(tmp_path):
    """A scheduler that places one task per answer is asked again after
    each, as the simulator asks it, until no ready task could start: the
    ask after that, on a view that could place nothing, is not made (with
    thousands of tasks queued, building that view cost as much as half a
    round's starts). One that places only on idle devices is done when
    none is idle; one that shares, when no device has the memory left."""
    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store
    from rlsched.pool import identical_pool
    from rlsched.schedulers.base import Scheduler
    from rlsched.view import Placement
    from rlsched.workload import Instance, Job, Task

    class OneAtATime(Scheduler):
        name = "one-at-a-time"

        def __init__(self, idle_only):
            self.idle_only, self.asked = idle_only, 0

        def _decide(self, view):
            self.asked += 1
            t = view.ready[0]
            for d in range(len(view.devices)):
                if view.fits(t, d) and not (self.idle_only and view.devices[d].n_tasks):
                    return [Placement(t, d)]
            return []

    two_per_gpu = 0.4 * identical_pool(2).devices[0].model.memory_gib
    for idle_only, started in ((True, 2), (False, 4)):
        store = Store(tmp_path / f"state-{idle_only}")
        store.submit([Instance("five", tuple(
            Job(f"j{i}", (Task("t", 60.0, gpu_memory=two_per_gpu, command="sleep 60"),))
            for i in range(5)), source="test")])
        scheduler = OneAtATime(idle_only)
        daemon = Daemon(store, "fake:2", scheduler)
        try:
            daemon.tick()
            assert len(store.open_attempts()) == started
            assert scheduler.asked == started  # not once more
        finally:
            for a in store.open_attempts():
                daemon.backend.kill(a.ref)
            daemon.close()


def test_a_view_kept_up_to_date_is_the_view_read_afresh(tmp_path, monkeypatch):
    """The daemon keeps its last view and brings it up to date with its own
    starts and ends, without a pass over every task: task by task, that view
    is the one read afresh from the store at the same moment. Here the
    changes are single starts, a gang, a CPU-only task, ends (of tasks of
    fractional memory: the devices' load is summed afresh) that make a
    child ready and finish a job (which stays in the kept table, every task
    done, as the simulator keeps finished jobs), a failure whose retry
    waits out its back-off and is ready once it has ended; a submission by
    another process, or through the daemon's own store object, makes the
    daemon read afresh."""
    import time as real_time
    import types

    import rlsched.live.daemon as daemon_module
    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store
    from rlsched.view import TaskState
    from rlsched.workload import Instance, Job, Task

    clock = types.SimpleNamespace(now=real_time.time(), time=lambda: clock.now)
    monkeypatch.setattr(daemon_module, "time", clock)
    sleep = "sleep 60"
    store = Store(tmp_path / "state")
    store.submit([Instance("mix", (
        Job("fails", (Task("f", 1.0, gpu_memory=0.2, command="exit 1", retries=1),)),
        *(Job(f"solo{i}", (Task("x", 1.0, gpu_memory=1.0, command=sleep),
                           Task("y", 1.0, gpu_memory=1.0, command=sleep, parents=("x",))))
          for i in range(4)),
        Job("quick", (Task("q1", 1.0, gpu_memory=0.1, command="true"),
                      Task("q2", 1.0, gpu_memory=1.0, command=sleep, parents=("q1",)))),
        Job("over", (Task("d", 1.0, gpu_memory=1.0, command="true"),)),
        Job("gang", (Task("g", 1.0, gpu_memory=1.0, gpus=2, command=sleep),)),
        Job("host", (Task("c", 1.0, gpus=0, command=sleep),)),
    ), source="test")])
    daemon = Daemon(store, "fake:4", "fifo")
    key = daemon.live[0].key

    def kept_and_fresh():
        daemon._round_ended = None
        kept = daemon._view()
        built = daemon._built
        fresh = daemon._view_fresh()
        daemon._built = built  # (go on from the kept one)
        return kept, fresh

    def same(kept, fresh):
        (view, round_), (fview, fround) = kept, fresh
        ids, fids = view.table.task_ids, fview.table.task_ids
        at = {k: t for t, k in enumerate(ids)}
        assert view.time == fview.time
        assert [ids[t] for t in view.ready] == [fids[t] for t in fview.ready]
        assert [(ids[r.task], r.device, r.start) for r in view.running] == \
            [(fids[r.task], r.device, r.start) for r in fview.running]
        for t, k in enumerate(fids):
            assert (view.task_state[at[k]], view.predicted[at[k]], view.spread[at[k]]) == \
                (fview.task_state[t], fview.predicted[t], fview.spread[t]), k
        names = [j.name for j in view.table.jobs]
        for j, job in enumerate(fview.table.jobs):
            k = names.index(job.name)
            assert (view.job_remaining[k], view.job_attained[k]) == \
                (fview.job_remaining[j], fview.job_attained[j]), job.name
        for j, job in enumerate(view.table.jobs):  # the kept table's finished jobs: all done
            if job.name not in {f.name for f in fview.table.jobs}:
                assert {view.task_state[t] for t in view.table.tasks_of(j)} == {TaskState.DONE}
        assert [(d.n_tasks, d.memory_used) for d in view.devices] == \
            [(d.n_tasks, d.memory_used) for d in fview.devices]  # (to the bit: 0.1 + 0.2 - 0.1)
        assert [ids[t] for t in round_.cpu_ready] == [fids[t] for t in fround.cpu_ready]
        assert [round_.stored[at[k]] for k in fids] == [fround.stored[t] for t in range(len(fids))]

    try:
        daemon._view()
        index = {k: i for i, k in enumerate(daemon._table.task_ids)}
        round_ = daemon._view()[1]
        daemon._start(round_, [(index[("fails", "f")], [key]), (index[("quick", "q1")], [key]),
                               (index[("over", "d")], [daemon.live[1].key])])
        same(*kept_and_fresh())  # three running (or ended, not yet reaped)
        assert wait_for(lambda: all(daemon.backend.exit_code(a.ref) is not None
                                    for a in store.open_attempts()))
        daemon._reap()  # f is queued again (backing off), q1 and d done: q2 ready, over finished
        (view, round_), fresh = kept_and_fresh()
        same((view, round_), fresh)
        assert ("over", "d") in view.table.task_ids and ("over", "d") not in fresh[0].table.task_ids
        assert ("quick", "q2") in [view.table.task_ids[t] for t in view.ready]
        assert ("fails", "f") not in [view.table.task_ids[t] for t in view.ready]
        assert [view.table.task_ids[t] for t in round_.cpu_ready] == [("host", "c")]
        daemon._start(round_, [(index[("host", "c")], None),
                               (index[("solo0", "x")], [daemon.live[1].key]),
                               (index[("gang", "g")], [daemon.live[2].key, daemon.live[3].key])])
        clock.now += 0.5
        (view, round_), fresh = kept_and_fresh()
        same((view, round_), fresh)
        clock.now += 1.0  # past the back-off: the retry is ready again
        daemon._start(round_, [(index[("solo1", "x")], [daemon.live[1].key])])
        (view, round_), fresh = kept_and_fresh()
        same((view, round_), fresh)
        assert ("fails", "f") in [view.table.task_ids[t] for t in view.ready]
        assert len(view.running) == 5  # two x, the gang on two devices, c
        # another process submits: the next view is read afresh, and holds its job
        Store(tmp_path / "state").submit([Instance("late", (Job("late", (
            Task("z", 1.0, gpu_memory=1.0, command=sleep),)),), source="test")])
        view, _ = daemon._view()
        assert ("late", "z") in view.table.task_ids and ("over", "d") not in view.table.task_ids
        # so does one through the daemon's own store object (a library user's, a test's)
        store.submit([Instance("own", (Job("own", (
            Task("w", 1.0, gpu_memory=1.0, command=sleep),)),), source="test")])
        view, _ = daemon._view()
        assert ("own", "w") in view.table.task_ids
    finally:
        for a in store.open_attempts():
            daemon.backend.kill(a.ref)
        daemon.close()


def test_a_launch_that_fails_leaves_its_device_to_the_next_task_in_the_round(tmp_path):
    """A placement whose process cannot start (here its working directory
    is missing) leaves its GPU free: the round asks again and starts the
    next task there, rather than leaving the GPU idle until the next round.
    And a job purged and submitted again under its name runs its new tasks."""
    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store
    from rlsched.workload import Instance, Job, Task

    store = Store(tmp_path / "state")
    jobs = [Job("bad", (Task("t", 1.0, gpu_memory=1.0, command="sleep 60",
                             workdir=str(tmp_path / "missing"), retries=2),))]
    jobs += [Job(f"ok{i}", (Task("t", 1.0, gpu_memory=1.0, command="sleep 1"),))
             for i in range(3)]
    store.submit([Instance("four", tuple(jobs), source="test")])
    daemon = Daemon(store, "fake:2", "fifo")
    try:
        daemon.tick()
        assert sorted(a.ref.device for a in store.open_attempts()) == [0, 1]
        # the queued job replaced by another of its name, in its place in the queue
        other = Store(tmp_path / "state")  # (another process: the CLI)
        other.cancel("ok2")
        other.purge("ok2")
        other.submit([Instance("again", (Job("ok2", (Task(
            "u", 1.0, gpu_memory=1.0, command=f"touch {tmp_path}/new"),)),), source="test")])
        assert tick_until_idle(daemon)
        assert (tmp_path / "new").exists()
    finally:
        for a in store.open_attempts():
            daemon.backend.kill(a.ref)
        daemon.close()


def test_a_relative_state_directory_and_a_workdir_run_a_task_once(tmp_path, monkeypatch):
    """The attempt's shell runs in the task's workdir and writes its pid and
    exit files itself: with --state given as a relative path, they must
    still land where the daemon reads them, or a finished task is taken for
    a lost one and run again."""

    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store
    from rlsched.workload import Instance, Job, Task

    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    store = Store("state")
    store.submit([Instance("one", (Job("one", (Task(
        "t", 1.0, gpu_memory=1.0, command="echo ran >> runs", workdir=str(tmp_path / "work")),)),),
        source="test")])
    daemon = Daemon(store, "fake:1", "fifo")
    try:
        tick_until_idle(daemon)
    finally:
        daemon.close()
    assert (tmp_path / "work" / "runs").read_text() == "ran\n"
    assert store.db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 1
