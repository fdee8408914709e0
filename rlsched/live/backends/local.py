"""The local backend: attempts are process groups on this machine, telemetry
is NVML here (or its fake for ``fake:N``, ``preset:NAME`` and ``file:PATH``)."""

from __future__ import annotations

from rlsched.errors import InputError
from rlsched.live import executor
from rlsched.live.backends import Backend, LiveDevice
from rlsched.live.lifecycle import LOST, AttemptRef, AttemptSpec
from rlsched.live.telemetry import FakeNvml, NvmlSource
from rlsched.pool import Pool, build_pool, identical_pool, model_for_gpu
from rlsched.sources.specs import POOL_PREFIXES, resolve_pool
from rlsched.view import DeviceTelemetry


def open_pool(spec: str) -> tuple[Pool, NvmlSource, FakeNvml | None]:
    """``local`` (NVML), ``fake:N``, ``identical:N``, ``preset:NAME`` or ``file:PATH``."""
    if spec == "local":
        source = NvmlSource()
        if not source.devices:
            raise InputError("--pool local", "NVML sees no GPU; use --pool fake:N")
        return build_pool("local", [model_for_gpu(d.name, d.memory_gib, d.power_limit_w, d.max_clock_mhz)
                                   for d in source.devices]), source, None
    if spec.startswith("fake:"):
        try:
            pool = identical_pool(int(spec[5:]), source=spec)
        except ValueError:
            raise InputError(spec, "use fake:N with N a number of GPUs") from None
    elif spec.partition(":")[0] in POOL_PREFIXES:
        pool = resolve_pool(spec)
    else:
        raise InputError(spec, "unknown pool for serve (use local for the GPUs NVML sees, "
                         "or simulated ones: fake:N, identical:N[?model=M], preset:NAME or "
                         "file:PATH)")
    fake = FakeNvml(pool)
    return pool, NvmlSource(fake), fake


class LocalBackend(Backend):
    """This machine's GPUs; devices are keyed by their NVML index.

    :param pool_spec: see :func:`open_pool`
    """

    name = "local"
    fixed_devices = True

    def __init__(self, pool_spec: str) -> None:
        self.pool, self.source, self.fake = open_pool(pool_spec)
        self._devices = [LiveDevice(i, info, dev.model, "localhost")
                         for i, (info, dev) in enumerate(zip(self.source.devices,
                                                             self.pool.devices))]

    def devices(self) -> list[LiveDevice]:
        return self._devices

    def sample(self, n_tasks: dict[int, int]) -> dict[int, DeviceTelemetry]:
        counts = [n_tasks.get(d.key, 0) for d in self._devices]
        return {s.index: s for s in self.source.sample(counts)}

    def start(self, attempt: AttemptSpec) -> int | None:
        launched = executor.launch(attempt.command, attempt.devices, attempt.log,
                                   attempt.exit_file, attempt.env, attempt.workdir)
        if self.fake is not None and attempt.device is not None:
            self.fake.declare(launched.pid, attempt.devices, attempt.gpu_memory)
        return launched.pid

    def _pid(self, attempt: AttemptRef) -> int | None:
        """The attempt's pid: from the store, or (if the daemon died before
        recording it) from the file the attempt's shell wrote."""
        return attempt.pid or executor.recorded_pid(attempt.exit_file)

    def exit_code(self, attempt: AttemptRef) -> int | None:
        code = executor.exit_code(attempt.exit_file)
        if code is not None:
            return code
        pid = self._pid(attempt)
        if pid is not None and executor.alive(pid):
            return None
        # it may have written its code and ended between the two looks: a
        # finished attempt must never be taken for a lost one (and run again)
        code = executor.exit_code(attempt.exit_file)
        return LOST if code is None else code

    def kill(self, attempt: AttemptRef) -> None:
        pid = self._pid(attempt)
        if pid:
            executor.kill(pid)

    def processes(self) -> dict[int, list[int]]:
        return {d.key: [p.pid for p in procs]
                for d, procs in zip(self._devices, self.source.processes())}

    def recover(self, attempts: list[AttemptRef]) -> None:
        """Tell the fake NVML what still runs (attempts adopted after a restart)."""
        if self.fake is None:
            return
        for attempt in attempts:
            pid = self._pid(attempt)
            if attempt.device is not None and pid is not None and executor.alive(pid):
                self.fake.declare(pid, attempt.devices, attempt.gpu_memory)

    def release(self, attempt: AttemptRef) -> None:
        if self.fake is not None and attempt.pid:
            self.fake.forget(attempt.pid)

    def close(self) -> None:
        self.source.close()

