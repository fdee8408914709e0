"""One ``rlsched serve`` per state directory.

Two daemons on one store would each see a task ready and each start it: the
task runs twice. The daemon therefore holds an OS lock (``flock``) on
``serve.lock`` in the state directory for as long as it runs, and writes its
pid there for the message a second daemon prints. The kernel drops the lock
when the process dies, however it dies, so a ``kill -9`` leaves no stale lock
to clean up; the pid left in the file is only ever read while the lock is
held by someone.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from rlsched.errors import InputError

LOCK_NAME = "serve.lock"


def _lock(fd: int, seconds: float = 1.0) -> bool:
    """Take the lock, trying for ``seconds``: a ``status`` that looks whether
    a serve runs holds it (shared) for a moment, and must not refuse a serve."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


class ServeLock:
    """Hold the state directory for one daemon, or refuse with who holds it.

    :param state_dir: the store's directory (it must exist)
    :raises InputError: another process holds the lock (its pid in the message)
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        old = os.umask(0o077)
        try:
            # never inherited by the tasks we start (PEP 446), so a task left
            # running after a crash does not keep the lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise InputError(str(self.path), f"cannot create the serve lock ({e.strerror})") \
                from None
        finally:
            os.umask(old)
        if not _lock(fd):
            holder = self._holder(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise InputError(str(state_dir), f"already served by rlsched serve ({who}); stop "
                             "that one first, or give this one another --state") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def _holder(self, fd: int) -> int | None:
        """The pid the holder wrote; it writes it just after it locks, so wait
        a moment for a holder that has only just started."""
        for _ in range(20):
            pid = _read_pid(fd)
            if pid is not None:
                return pid
            time.sleep(0.05)
        return None

    def release(self) -> None:
        """Let another daemon serve this state (also done by the OS at exit)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def serve_holder(state_dir: Path) -> int | None:
    """The pid of the ``serve`` that holds ``state_dir`` now, or None if none
    does (the lock is free). Takes nothing: a free lock is let go at once."""
    path = Path(state_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        return pid
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return None


def _read_pid(fd: int) -> int | None:
    """The pid a holder wrote in the lock file, or None if it has not (yet)."""
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None
