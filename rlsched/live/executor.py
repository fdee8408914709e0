"""Runs one attempt of a task as a process group, and finds it again after a crash.

The command runs under ``sh`` in a session of its own (so cancel and timeout
kill the whole group), with ``CUDA_VISIBLE_DEVICES`` set to the chosen GPU (a
gang's GPUs, in NVML's PCI bus order, ``0,2,3``) and
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA's index is NVML's. Its output
goes to a log file per attempt, and the shell writes the command's exit code
to a file when it ends: so a daemon that restarts after a crash can tell a
finished attempt (its code is there) from one that died with it (no code),
and never runs a finished task again. The attempt is committed to the store
before its process starts, and the shell writes its own pid first, so a
daemon killed between the two still finds the process.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Launched:
    pid: int
    log: Path
    exit_file: Path


def launch(command: str, devices: int | tuple[int, ...] | None, log: Path, exit_file: Path,
           env: dict[str, str] | None = None, workdir: str | None = None) -> Launched:
    """Start ``command`` on the GPUs of NVML indices ``devices`` (None or
    none: a CPU-only task, no GPU visible)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    full_env["CUDA_VISIBLE_DEVICES"] = visible_devices(devices)
    q = shlex.quote(str(exit_file))
    p = shlex.quote(str(pid_file(exit_file)))
    # the command is an argument of the wrapper, never spliced into its text:
    # whatever it holds (an unbalanced quote, a ')'), it is the command's own
    # error (exit 2 from eval), recorded like any other exit. The wrapper
    # makes the pid and exit files itself, private (umask is a builtin: no
    # process but the command's subshell), and gives the command the
    # daemon's umask back: the daemon creates only the log, so a round that
    # starts many tasks does not wait on two file creations each. An empty
    # or missing exit file reads as no code yet, and the code is one short
    # write, done before the wrapper exits
    old = os.umask(0o077)
    try:
        out = open(log, "ab")
    finally:
        os.umask(old)
    wrapped = (f"umask 077 ; echo $$ > {p} ; umask {old:04o} ; ( eval \"$1\" ) ; code=$? ; "
               f"umask 077 ; echo $code > {q} ; exit $code")
    cwd = os.path.expanduser(workdir) if workdir else None
    try:
        proc = subprocess.Popen(["sh", "-c", wrapped, "rlsched-attempt", command], stdout=out,
                                stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
                                start_new_session=True)
    finally:
        out.close()
    return Launched(proc.pid, log, exit_file)


def visible_devices(devices: int | tuple[int, ...] | None) -> str:
    """``CUDA_VISIBLE_DEVICES`` for NVML indices ``devices``: ascending, which
    is PCI bus order (NVML enumerates by bus id, as ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
    makes CUDA do); empty for none."""
    if devices is None:
        return ""
    if isinstance(devices, int):
        return str(devices)
    return ",".join(str(d) for d in sorted(devices))


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie child of ours is reaped and counts as ended)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child (adopted after a restart)
    return pid_exists(pid)


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_file(exit_file: Path) -> Path:
    """Where the attempt's shell writes its pid (= its process group) first thing."""
    return Path(f"{exit_file}.pid")


def recorded_pid(exit_file: Path) -> int | None:
    """The pid the attempt recorded, if it got that far."""
    try:
        return int(pid_file(exit_file).read_text().strip())
    except (OSError, ValueError):
        return None


def exit_code(exit_file: Path) -> int | None:
    """The attempt's exit code, or None if it has none (still running, or died)."""
    try:
        return int(Path(exit_file).read_text().strip())
    except (OSError, ValueError):
        return None


def kill(pid: int) -> None:
    """Kill the attempt's whole process group."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
