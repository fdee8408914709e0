"""A task's life in the live runtime: its statuses, its attempts, and the one
place that says what an attempt's exit makes of its task.

A task is ``queued`` until an attempt starts (``running``). When the attempt
ends, :func:`outcome` decides: ``done`` on exit 0; ``queued`` again, after a
back-off, while retries are left (a *lost* attempt, whose process or node
went away without an exit code, is not the task's fault and is retried up to
:data:`MAX_LOST` times without counting); else ``failed``, and every task of
its job not yet started ``skipped`` (its job runs nothing more). A task
whose job was cancelled meanwhile stays ``cancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class TaskStatus(str, Enum):
    """A stored task's state; its value is what the database and ``status --json`` hold."""

    QUEUED = "queued"        # waiting for its parents, a device, or its retry back-off
    RUNNING = "running"      # an attempt is open
    DONE = "done"            # an attempt exited 0
    FAILED = "failed"        # an attempt failed and no retries are left
    SKIPPED = "skipped"      # a task of its job failed before it started: it never runs
    CANCELLED = "cancelled"  # its job was cancelled before it finished

    def __str__(self) -> str:
        return self.value


#: exit code of an attempt whose process or node was lost (not the task's fault)
LOST = -9
#: exit code of an attempt that could not be launched (a missing working
#: directory, an unwritable log): a shell's code for a command it cannot run
LAUNCH_FAILED = 127
#: exit code of an attempt killed at its timeout (as GNU timeout records it)
TIMED_OUT = 124
#: seconds before the 1st, 2nd, 3rd (and later) retry of a failed attempt
BACKOFF_S = (1.0, 5.0, 30.0)
#: times an attempt may be lost and run again without counting against retries
MAX_LOST = 3


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt to start: the command and where its output goes."""

    attempt_id: int
    command: str
    device: int | None  # a LiveDevice key, None for a CPU-only task
    log: Path
    exit_file: Path
    env: dict[str, str]
    workdir: str | None
    gpu_memory: float
    #: a gang's other device keys (a task of several GPUs)
    gang: tuple[int, ...] = ()

    @property
    def devices(self) -> tuple[int, ...]:
        """Every device key of the attempt (none for a CPU-only task)."""
        return () if self.device is None else (self.device, *self.gang)


@dataclass(frozen=True)
class AttemptRef:
    """What a backend needs to find, watch and stop an attempt it started.

    :param id: the attempt's id in the store
    :param pid: its process (group) where there is a local one and it was recorded
    :param device: the device key it runs on, None for a CPU-only task
    :param log: where its output goes
    :param exit_file: where its shell records the exit code
    :param gpu_memory: GiB its task declared (on each of its devices)
    :param gang: a gang's other device keys
    """

    id: int
    pid: int | None
    device: int | None
    log: Path
    exit_file: Path
    gpu_memory: float
    gang: tuple[int, ...] = ()

    @property
    def devices(self) -> tuple[int, ...]:
        """Every device key of the attempt (none for a CPU-only task)."""
        return () if self.device is None else (self.device, *self.gang)


def outcome(code: int, status: TaskStatus, tries: int, retries: int, lost: int,
            now: float, job_failed: bool = False) -> tuple[TaskStatus, float]:
    """What an ended attempt makes of its task: its new status and the time
    before which it may not start again.

    :param code: the attempt's exit code (:data:`LOST`, :data:`TIMED_OUT`, ...)
    :param status: the task's status when the attempt ended
    :param tries: the task's attempts so far, this one included
    :param retries: attempts the task allows after a failure
    :param lost: the task's lost attempts so far, this one included
    :param now: the time the attempt ended
    :param job_failed: another task of its job has failed for good: the job
        runs nothing more, so a failed attempt is not retried
    """
    if status != TaskStatus.RUNNING:  # cancelled meanwhile
        return status, 0.0
    if code == 0:
        return TaskStatus.DONE, 0.0
    if job_failed:
        return TaskStatus.FAILED, 0.0
    if code == LOST and lost <= MAX_LOST:
        return TaskStatus.QUEUED, now + BACKOFF_S[0]
    if tries <= retries:
        return TaskStatus.QUEUED, now + BACKOFF_S[min(tries - 1, len(BACKOFF_S) - 1)]
    return TaskStatus.FAILED, 0.0
