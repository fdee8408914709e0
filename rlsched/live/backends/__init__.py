"""Where the live scheduler's attempts run: one interface, two implementations.

The control loop (:mod:`rlsched.live.daemon`) owns the store, the scheduler and the
shield; a :class:`Backend` owns the devices and the processes. ``local`` runs
attempts as process groups on this machine and reads NVML here; ``ray`` runs
them as Ray tasks pinned to a node and GPU of a Ray cluster and reads NVML on
every node through a small actor. Choosing one is a flag of ``rlsched serve``.

Devices have a stable integer *key* for the daemon's lifetime (what the store
records as an attempt's device); the daemon maps the live devices to the
0..n-1 indices of the cluster view each round, so a device that leaves (a Ray
node lost) simply drops out of the view.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from rlsched.errors import InputError
from rlsched.live.lifecycle import AttemptRef, AttemptSpec
from rlsched.live.telemetry import DeviceInfo
from rlsched.pool import GpuModel
from rlsched.view import DeviceTelemetry


@dataclass(frozen=True)
class LiveDevice:
    """A device the backend can run attempts on now.

    :param key: stable id of the device (recorded in the store)
    :param info: what NVML says of it
    :param model: its performance model for the scheduler
    :param host: the machine (node) it is on
    """

    key: int
    info: DeviceInfo
    model: GpuModel
    host: str


class Backend(ABC):
    """Devices and processes for the control loop."""

    #: ``local`` or ``ray``
    name: str = "backend"
    #: whether the devices stay those it started with (a machine's GPUs), so a
    #: task none of them can take never will; a cluster's nodes come and go
    fixed_devices: bool = False

    @abstractmethod
    def devices(self) -> list[LiveDevice]:
        """The devices that can run attempts now, in a stable order."""

    @abstractmethod
    def sample(self, n_tasks: dict[int, int]) -> dict[int, DeviceTelemetry]:
        """A telemetry sample of each live device by key (``index`` is the
        key); ``n_tasks`` counts the attempts running there by key."""

    @abstractmethod
    def start(self, attempt: AttemptSpec) -> int | None:
        """Start an attempt; its pid where there is a local process."""

    @abstractmethod
    def exit_code(self, attempt: AttemptRef) -> int | None:
        """The exit code of an open attempt,
        :data:`~rlsched.live.lifecycle.LOST` if it died without one, or None
        while it runs."""

    @abstractmethod
    def kill(self, attempt: AttemptRef) -> None:
        """Stop an open attempt (cancel, timeout)."""

    def processes(self) -> dict[int, list[int]]:
        """The pids of the compute processes NVML sees on each device, by
        key, ours or not; empty where the backend cannot tell."""
        return {}

    def recover(self, attempts: list[AttemptRef]) -> None:
        """Called once at start with the attempts a previous daemon left open."""

    def release(self, attempt: AttemptRef) -> None:
        """Called once an attempt is closed in the store."""

    def close(self) -> None:
        """Release what the backend holds (connections, actors)."""


def open_backend(name: str, pool_spec: str = "local", address: str | None = None) -> Backend:
    """``local`` with a pool SPEC (see :mod:`rlsched.live.backends.local`), or ``ray``
    with an ``address`` (``auto``, ``HOST:PORT``), or with none to start Ray on
    this machine with its GPUs (``fake:N`` there: N simulated GPUs)."""
    if name == "local":
        from rlsched.live.backends.local import LocalBackend

        return LocalBackend(pool_spec)
    if name == "ray":
        try:
            from rlsched.live.backends.ray_cluster import RayBackend
        except ImportError:
            raise InputError("--backend ray", "Ray is not installed; install it with "
                             "pip install 'rlsched[ray]'") from None
        local_gpus = None
        if address is None and pool_spec.startswith("fake:"):
            try:
                local_gpus = int(pool_spec[5:])
            except ValueError:
                raise InputError(pool_spec, "use fake:N with N a number of GPUs") from None
        elif address is not None and pool_spec != "local":
            raise InputError("--pool", "with --address the pool is the Ray cluster's GPUs; "
                             "leave --pool out")
        return RayBackend(address, local_gpus)
    raise InputError("--backend", f"unknown backend '{name}' (known: local, ray)")
