"""The local backend tells a finished attempt from a lost one, whatever the timing."""

from __future__ import annotations

from pathlib import Path

from rlsched.live import executor
from rlsched.live.backends.local import LocalBackend
from rlsched.live.lifecycle import LOST, AttemptRef


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
