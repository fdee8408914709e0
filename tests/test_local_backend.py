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


def test_a_view_built_again_within_a_round_is_the_view_built_afresh(tmp_path, monkeypatch):
    """Within a round the daemon builds its next view from the last one and
    its own starts, without a pass over every task: that view is, field by
    field, the one read afresh from the store at the same moment. Here the
    starts hold single tasks, a gang and a CPU-only task; a retry's back-off
    ends between the two views (it joins the ready tasks in their order);
    and another process's submission makes the daemon read afresh."""
    import time as real_time
    import types

    import rlsched.live.daemon as daemon_module
    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store
    from rlsched.workload import Instance, Job, Task

    clock = types.SimpleNamespace(now=real_time.time(), time=lambda: clock.now)
    monkeypatch.setattr(daemon_module, "time", clock)
    sleep = "sleep 60"
    store = Store(tmp_path / "state")
    store.submit([Instance("mix", (
        Job("fails", (Task("f", 1.0, gpu_memory=1.0, command="exit 1", retries=1),)),
        *(Job(f"solo{i}", (Task("x", 1.0, gpu_memory=1.0, command=sleep),
                           Task("y", 1.0, gpu_memory=1.0, command=sleep, parents=("x",))))
          for i in range(6)),
        Job("gang", (Task("g", 1.0, gpu_memory=1.0, gpus=2, command=sleep),)),
        Job("host", (Task("c", 1.0, gpus=0, command=sleep),)),
    ), source="test")])
    daemon = Daemon(store, "fake:4", "fifo")

    def fresh_and_derived(started):
        kept = daemon._built
        derived = daemon._view_after(started)
        after = daemon._built
        daemon._built, daemon._round_ended = kept, None
        fresh = daemon._view()
        daemon._built = after
        return fresh, derived

    def same(fresh, derived):
        (view, round_), (dview, dround) = fresh, derived
        assert [d.n_tasks for d in dview.devices] == [d.n_tasks for d in view.devices]
        assert dview._replace(devices=()) == view._replace(devices=())
        assert (dround.stored, dround.cpu_ready, dround.predicted) == \
            (round_.stored, round_.cpu_ready, round_.predicted)

    try:
        daemon._view()
        index = {key: i for i, key in enumerate(daemon._table.task_ids)}
        # the failing task runs, ends, and waits out its back-off
        daemon._round_ended = None
        view, round_ = daemon._view()
        daemon._start(round_, [(index[("fails", "f")], [daemon.live[0].key])])
        assert wait_for(lambda: daemon.backend.exit_code(store.open_attempts()[0].ref) is not None)
        daemon._reap()
        daemon._round_ended = None
        view, round_ = daemon._view()
        assert index[("fails", "f")] not in view.ready  # backing off
        assert round_.cpu_ready == (index[("host", "c")],)
        started = daemon._start(round_, [(index[("host", "c")], None),
                                         (index[("solo0", "x")], [daemon.live[1].key]),
                                         (index[("gang", "g")], [daemon.live[2].key,
                                                                 daemon.live[3].key])])
        clock.now += 0.5
        fresh, derived = fresh_and_derived(started)
        same(fresh, derived)
        assert index[("solo0", "x")] not in derived[0].ready
        clock.now += 1.0  # past the back-off: the retry is ready again
        started = daemon._start(derived[1], [(index[("solo1", "x")], [daemon.live[1].key])])
        fresh, derived = fresh_and_derived(started)
        same(fresh, derived)
        assert index[("fails", "f")] in derived[0].ready
        assert len(derived[0].running) == 5  # x twice, the gang on two devices, c
        # another process submits: the next view is read afresh, and holds its job
        Store(tmp_path / "state").submit([Instance("late", (Job("late", (
            Task("z", 1.0, gpu_memory=1.0, command=sleep),)),), source="test")])
        view, _ = daemon._view_after({})
        assert view.table.n_jobs == daemon._built.table.n_jobs == 10
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
