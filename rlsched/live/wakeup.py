"""What cuts the daemon's wait between rounds short.

The control loop runs a round, then waits up to its tick. Two events end the
wait at once, so a task starts milliseconds (not a tick) after it can:

* a child process exits: a ``SIGCHLD`` handler writes a byte to a self-pipe
  (the classic self-pipe trick; the handler does nothing else, which is all a
  signal handler may safely do);
* a command changes the queue: ``submit``, ``cancel``, ``drain`` and
  ``resume`` send a datagram to ``STATE/wake.sock`` (:func:`notify`); no
  daemon listening is not an error.

Attempts adopted after a restart are not our children, and Ray's run
elsewhere: those are still found by the tick's polling.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
from pathlib import Path
from types import FrameType

SOCKET_NAME = "wake.sock"


class Wakeup:
    """The daemon's waiting room.

    :param state_dir: where ``wake.sock`` is made (removed again by :meth:`close`)
    """

    def __init__(self, state_dir: Path) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._installed = threading.current_thread() is threading.main_thread()
        if self._installed:  # Python runs signal handlers in the main thread only
            self._previous = signal.signal(signal.SIGCHLD, self._on_child)
        self.path = Path(state_dir) / SOCKET_NAME
        self._socket: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.path.unlink(missing_ok=True)  # left by a daemon killed with -9
            self._socket.bind(str(self.path))
            self._socket.setblocking(False)
        except OSError:  # a path too long for a socket, a read-only directory: poll instead
            self._socket.close()
            self._socket = None

    def _on_child(self, signum: int, frame: FrameType | None) -> None:
        try:
            os.write(self._write, b"c")
        except OSError:  # the pipe is full: a wakeup is pending anyway
            pass

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; whether something woke us first."""
        watched = [self._read] + ([self._socket] if self._socket is not None else [])
        ready, _, _ = select.select(watched, [], [], timeout)
        for source in ready:  # drain, so the next wait waits
            try:
                while True:
                    if source is self._socket:
                        self._socket.recv(64)
                    else:
                        if not os.read(self._read, 4096):
                            break
            except (BlockingIOError, InterruptedError):
                pass
        return bool(ready)

    def close(self) -> None:
        if self._installed:
            signal.signal(signal.SIGCHLD, self._previous if self._previous is not None
                          else signal.SIG_DFL)
            self._installed = False
        if self._socket is not None:
            self._socket.close()
            self._socket = None
            self.path.unlink(missing_ok=True)
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


def notify(state_dir: Path) -> None:
    """Wake the daemon serving ``state_dir``, if one listens: the queue changed."""
    path = Path(state_dir) / SOCKET_NAME
    if not path.exists():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"w", str(path))
        except OSError:  # nobody listens (a stale socket), or it is busy: it polls anyway
            pass
