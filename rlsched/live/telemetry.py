"""Live GPU telemetry through NVML, and a fake NVML for machines without GPUs.

:class:`NvmlSource` reads devices through the ``pynvml`` module of
``nvidia-ml-py`` (or any object with the same function names). Every field is
read on its own: a field a device does not support (``NVMLError_NotSupported``,
``NoPermission``) falls back to a neutral value and never takes the device
out; a device that is lost (``NVMLError_GpuIsLost``) reports unhealthy.

:class:`FakeNvml` has the same function names, backed by a pool model and the
processes the runtime declares on each device, as projects that test NVML code
without GPUs do (gpustat, Ray). The runtime uses it for ``fake:N`` and
``preset:NAME`` pools, and the tests run :class:`NvmlSource` against it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from rlsched.errors import InputError
from rlsched.live.executor import pid_exists
from rlsched.pool import GpuModel, Pool
from rlsched.view import DeviceTelemetry

GIB = 2**30


class NvmlUnavailable(InputError):
    """No NVML here: no library or no driver."""


@dataclass(frozen=True)
class DeviceInfo:
    """What does not change about a device: index (NVML's, PCI bus order),
    name, UUID, total memory in GiB, power limit and maximum SM clock."""

    index: int
    name: str
    uuid: str
    memory_gib: float
    power_limit_w: float
    max_clock_mhz: float


@dataclass(frozen=True)
class GpuProcess:
    """A compute process on a device, ours or not."""

    pid: int
    memory_gib: float


def unhealthy_sample(info: DeviceInfo, index: int, n_tasks: int = 0) -> DeviceTelemetry:
    """The sample of a device that cannot be read (lost, or its node out of
    reach): idle, unhealthy, so no placement goes there."""
    return DeviceTelemetry(index, 0.0, 0.0, info.memory_gib, 0.0, 0.0, info.power_limit_w, 0.0,
                           info.max_clock_mhz, False, n_tasks)


class NvmlSource:
    """Telemetry of the local GPUs through NVML.

    :param nvml: the ``pynvml`` module (default), or a fake with its names
    """

    def __init__(self, nvml: Any = None) -> None:
        if nvml is None:
            import pynvml

            nvml = pynvml
        self.nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as e:
            raise NvmlUnavailable(
                "--pool local", f"no NVIDIA driver available ({e}); without GPUs, use "
                "--pool fake:N (a simulated pool of N GPUs)") from None
        # errors after which no field of a device can be trusted
        self._fatal = tuple(getattr(nvml, n) for n in (
            "NVMLError_GpuIsLost", "NVMLError_DriverNotLoaded", "NVMLError_Uninitialized",
            "NVMLError_LibraryNotFound") if hasattr(nvml, n))
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i)
                         for i in range(nvml.nvmlDeviceGetCount())]
        self.devices = [self._info(i, h) for i, h in enumerate(self._handles)]

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass

    def _get(self, fn: str, *args: Any, default: Any = None) -> Any:
        try:
            return getattr(self.nvml, fn)(*args)
        except self._fatal:
            raise
        except self.nvml.NVMLError:
            return default

    def _info(self, index: int, handle: Any) -> DeviceInfo:
        name = self._get("nvmlDeviceGetName", handle, default=f"gpu{index}")
        uuid = self._get("nvmlDeviceGetUUID", handle, default=f"GPU-{index}")
        memory = self._get("nvmlDeviceGetMemoryInfo", handle)
        limit = self._get("nvmlDeviceGetEnforcedPowerLimit", handle, default=0)
        clock = self._get("nvmlDeviceGetMaxClockInfo", handle, self.nvml.NVML_CLOCK_SM,
                          default=0)
        return DeviceInfo(index, name.decode() if isinstance(name, bytes) else str(name),
                          uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                          memory.total / GIB if memory is not None else 0.0,
                          limit / 1000.0, float(clock))

    def sample(self, n_tasks: list[int] | None = None) -> list[DeviceTelemetry]:
        """One sample per device; ``n_tasks`` counts the runtime's own tasks."""
        out = []
        for i, (info, h) in enumerate(zip(self.devices, self._handles)):
            ours = n_tasks[i] if n_tasks else 0
            try:
                util = self._get("nvmlDeviceGetUtilizationRates", h)
                memory = self._get("nvmlDeviceGetMemoryInfo", h)
                temp = self._get("nvmlDeviceGetTemperature", h, self.nvml.NVML_TEMPERATURE_GPU,
                                 default=0)
                power = self._get("nvmlDeviceGetPowerUsage", h, default=0)
                clock = self._get("nvmlDeviceGetClockInfo", h, self.nvml.NVML_CLOCK_SM,
                                  default=info.max_clock_mhz)
            except self._fatal:
                out.append(unhealthy_sample(info, i, ours))
                continue
            used = memory.used / GIB if memory is not None else 0.0
            out.append(DeviceTelemetry(
                i, (util.gpu / 100.0) if util is not None else 0.0, used, info.memory_gib,
                float(temp), power / 1000.0, info.power_limit_w, float(clock),
                info.max_clock_mhz, True, ours))
        return out

    def processes(self) -> list[list[GpuProcess]]:
        """Compute processes on each device, including ones we did not start."""
        out = []
        for h in self._handles:
            try:
                procs = self._get("nvmlDeviceGetComputeRunningProcesses", h, default=[])
            except self._fatal:
                procs = []
            out.append([GpuProcess(p.pid, (p.usedGpuMemory or 0) / GIB) for p in procs])
        return out


class _NvmlError(Exception):
    def __init__(self, value: str = "") -> None:
        super().__init__(value)


def _error_types() -> dict[str, type]:
    base = type("NVMLError", (_NvmlError,), {})
    names = ("NotSupported", "GpuIsLost", "NoPermission", "LibraryNotFound",
             "DriverNotLoaded", "Uninitialized")
    return {"NVMLError": base,
            **{f"NVMLError_{n}": type(f"NVMLError_{n}", (base,), {}) for n in names}}


class FakeNvml:
    """A stand-in for the ``pynvml`` module, backed by a pool model.

    The runtime declares what it runs (:meth:`declare`: a pid, a device and
    its declared memory); the fake reports that memory as used and the device
    as busy while any declared process is alive. Tests can also add outside
    processes, make a field unsupported, or lose a device or the driver.

    :param pool: the devices to pretend to have
    """

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    # set in __init__, one class each, as pynvml has them
    NVMLError: type[Exception]
    NVMLError_NotSupported: type[Exception]
    NVMLError_GpuIsLost: type[Exception]
    NVMLError_NoPermission: type[Exception]
    NVMLError_LibraryNotFound: type[Exception]
    NVMLError_DriverNotLoaded: type[Exception]
    NVMLError_Uninitialized: type[Exception]

    def __init__(self, pool: Pool) -> None:
        for name, cls in _error_types().items():
            setattr(self, name, cls)
        self.models: list[GpuModel] = [d.model for d in pool.devices]
        self._lock = threading.Lock()
        self._procs: dict[int, tuple[tuple[int, ...], float]] = {}  # pid -> (devices, GiB each)
        self.unsupported: set[str] = set()
        self.lost: set[int] = set()
        self.driver_gone = False
        self.initialised = False

    # the runtime's side
    def declare(self, pid: int, devices: int | tuple[int, ...], memory_gib: float) -> None:
        """Process ``pid`` runs on ``devices`` (a gang's several), using
        ``memory_gib`` on each, as NVML would list it on each."""
        with self._lock:
            self._procs[pid] = ((devices,) if isinstance(devices, int) else tuple(devices),
                                memory_gib)

    def forget(self, pid: int) -> None:
        with self._lock:
            self._procs.pop(pid, None)

    # pynvml's side
    def _check(self, fn: str, handle: int | None = None) -> None:
        if self.driver_gone:
            raise self.NVMLError_DriverNotLoaded("Driver Not Loaded")
        if not self.initialised:
            raise self.NVMLError_Uninitialized("Uninitialized")
        if fn in self.unsupported:
            raise self.NVMLError_NotSupported("Not Supported")
        if handle is not None and handle in self.lost:
            raise self.NVMLError_GpuIsLost("GPU is lost")

    def _alive(self, device: int) -> list[tuple[int, float]]:
        with self._lock:
            items = list(self._procs.items())
        out = []
        for pid, (ds, mem) in items:
            if device in ds and pid_exists(pid):
                out.append((pid, mem))
        return out

    def nvmlInit(self) -> None:
        if self.driver_gone:
            raise self.NVMLError_DriverNotLoaded("Driver Not Loaded")
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.models)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._check("nvmlDeviceGetHandleByIndex")
        return index

    def nvmlDeviceGetName(self, h: int) -> str:
        self._check("nvmlDeviceGetName", h)
        return f"Fake {self.models[h].name}"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        self._check("nvmlDeviceGetUUID", h)
        return f"GPU-fake-{h:04d}"

    def nvmlDeviceGetMemoryInfo(self, h: int):
        self._check("nvmlDeviceGetMemoryInfo", h)
        total = int(self.models[h].memory_gib * GIB)
        used = min(int(sum(m for _, m in self._alive(h)) * GIB), total)
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, h: int):
        self._check("nvmlDeviceGetUtilizationRates", h)
        return SimpleNamespace(gpu=100 if self._alive(h) else 0, memory=0)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        self._check("nvmlDeviceGetTemperature", h)
        return 80 if self._alive(h) else 35

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        self._check("nvmlDeviceGetPowerUsage", h)
        m = self.models[h]
        return int(1000 * (m.power_w if self._alive(h) else m.idle_w))

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        self._check("nvmlDeviceGetEnforcedPowerLimit", h)
        return int(1000 * self.models[h].power_w)

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        self._check("nvmlDeviceGetClockInfo", h)
        return int(self.models[h].max_clock_mhz)

    def nvmlDeviceGetMaxClockInfo(self, h: int, clock: int) -> int:
        self._check("nvmlDeviceGetMaxClockInfo", h)
        return int(self.models[h].max_clock_mhz)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int):
        self._check("nvmlDeviceGetComputeRunningProcesses", h)
        return [SimpleNamespace(pid=pid, usedGpuMemory=int(mem * GIB))
                for pid, mem in self._alive(h)]

