"""A scheduler slow to load (a learned policy) is served from the first
round: share decides until it has loaded, then it decides."""

from __future__ import annotations

import json
import threading

import pytest

from rlsched.errors import InputError
from rlsched.live.daemon import Daemon
from rlsched.live.store import Store
from rlsched.live.warm_start import WarmStart
from rlsched.pool import identical_pool
from rlsched.schedulers import make_scheduler
from rlsched.sim import Simulator
from rlsched.workload import Instance, Job, Task


class Recording:
    """A scheduler that places nothing and counts its calls."""

    name = "recording"

    def __init__(self) -> None:
        self.calls = 0
        self.seed = None

    def reset(self, seed: int = 0) -> None:
        self.seed = seed

    def decide(self, view):
        self.calls += 1
        return []


def a_view():
    jobs = tuple(Job(f"j{i}", (Task("t", 1.0, gpu_memory=1.0),)) for i in range(3))
    return Simulator(Instance("three", jobs), identical_pool(2)).reset()


def test_the_fallback_decides_until_the_load_returns_then_the_loaded_one_does():
    gate, loaded, ready = threading.Event(), Recording(), []

    def load():
        gate.wait(60)
        return loaded

    warm = WarmStart("slow", load, make_scheduler("fifo"),
                     on_ready=lambda s, seconds, meanwhile: ready.append((s, meanwhile)))
    warm.reset(7)
    view = a_view()
    assert warm.decide(view)  # fifo places the ready tasks
    assert loaded.calls == 0
    gate.set()
    assert warm.wait(60)
    assert warm.decide(view) == [] and loaded.calls == 1
    assert loaded.seed == 7  # reset as the episode was
    assert ready == [(loaded, 1)]
    assert (warm.decisions, warm.fallback_decisions) == (2, 1)
    assert warm.load_s is not None and warm.load_s >= 0


def test_a_load_that_fails_is_raised_from_the_next_decision():
    def load():
        raise InputError("rl:broken.zip", "cannot load the checkpoint")

    warm = WarmStart("rl:broken.zip", load, make_scheduler("fifo"))
    assert warm.wait(60)
    with pytest.raises(InputError, match="cannot load"):
        warm.decide(a_view())


def test_serve_with_the_shipped_policy_starts_under_share_and_hands_over(tmp_path, monkeypatch):
    import agents  # noqa: F401  (registers rl:)
    from rlsched.schedulers import SCHEDULER_PREFIXES

    gate, real = threading.Event(), SCHEDULER_PREFIXES["rl"]

    def slow_load(spec):  # the policy loads only once the first round is over
        gate.wait(60)
        return real(spec)

    monkeypatch.setitem(SCHEDULER_PREFIXES, "rl", slow_load)
    store = Store(tmp_path / "state")
    jobs = tuple(Job(f"j{i}", (Task("t", 1.0, gpu_memory=1.0, command="sleep 30"),))
                 for i in range(4))
    store.submit([Instance("four", jobs, source="test")])
    daemon = Daemon(store, "fake:2", "rl:default")
    try:
        daemon.tick()  # before the policy has loaded: share starts two tasks
        assert len(store.open_attempts()) == 2
        assert daemon.scheduler.loaded is None
        gate.set()
        assert daemon.scheduler.wait(300)
        daemon.tick()
        events = store.db.execute(
            "SELECT detail FROM events WHERE kind='scheduler_ready'").fetchall()
        assert len(events) == 1
        detail = json.loads(events[0][0])
        assert detail["scheduler"] == "rl:default" and detail["fallback"] == "share"
        assert detail["fallback_decisions"] >= 1
        assert daemon.scheduler.loaded is not None
    finally:
        for a in store.open_attempts():
            daemon.backend.kill(a.ref)
        daemon.close()


def test_a_missing_checkpoint_is_refused_before_anything_starts(tmp_path):
    import agents  # noqa: F401

    store = Store(tmp_path / "state")
    with pytest.raises(InputError, match="no such checkpoint"):
        Daemon(store, "fake:2", f"rl:{tmp_path / 'nothing.zip'}")


def test_serve_stops_with_one_line_when_the_policy_cannot_load(tmp_path):
    from tests.helpers import rlsched

    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    broken.with_suffix(".json").write_text(json.dumps({"encoder_version": 0, "maxima": {}}))
    proc = rlsched("serve", "--pool", "fake:2", "--scheduler", f"rl:{broken}", "--tick", "0.05",
                   state=tmp_path / "state", timeout=300)  # an empty queue: it polls the load
    assert proc.returncode == 2
    assert "encoder version" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_exit_when_idle_fails_when_the_policy_never_loaded_even_if_share_did_all(tmp_path):
    # the queue empties under share before the load fails: the run still
    # used a policy that cannot load, and a script must hear it
    from tests.helpers import rlsched

    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    broken.with_suffix(".json").write_text(json.dumps({"encoder_version": 0, "maxima": {}}))
    job = tmp_path / "job.yaml"
    job.write_text("name: quick\ntasks:\n  - {id: run, command: 'true'}\n")
    state = tmp_path / "state"
    assert rlsched("submit", job, state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:2", "--scheduler", f"rl:{broken}", "--tick", "0.05",
                   "--exit-when-idle", state=state, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "encoder version" in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_serve_says_at_its_end_how_many_decisions_the_fallback_made(capsys):
    from rlsched.cli import _say_who_decided

    gate = threading.Event()
    warm = WarmStart("rl:slow.zip", lambda: gate.wait(60) and Recording(), make_scheduler("fifo"))
    warm.decide(a_view())
    _say_who_decided(warm)
    assert capsys.readouterr().err == (
        "rlsched serve: rl:slow.zip had not loaded; fifo made 1 of the 1 decisions\n")
    gate.set()
    assert warm.wait(60)
    warm.decide(a_view())
    _say_who_decided(warm)
    err = capsys.readouterr().err
    assert err.startswith("rlsched serve: rl:slow.zip loaded in ")
    assert err.endswith(" s; fifo made 1 of the 2 decisions\n")
