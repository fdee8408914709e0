"""The Ray backend: the pool is every GPU of a Ray cluster.

Ray picks a GPU itself for a task that asks ``num_gpus=1``, so the placement
a scheduler chose would be lost. Each node therefore declares one custom
resource per GPU, ``gpu_slot_K`` for its local GPU K (``ray start
--resources='{"gpu_slot_0": 1, "gpu_slot_1": 1}'``). An attempt on node N,
GPU K is a Ray task with ``num_gpus=0, num_cpus=0``, a small share of
``gpu_slot_K``, a hard node affinity to N, and ``CUDA_VISIBLE_DEVICES=K``
in its runtime environment: it runs there and nowhere else, and several of
our tasks may share a GPU where the scheduler (and the shield) say so.

One small actor per node (:class:`NodeTelemetry`, ``num_cpus=0``) reads that
node's GPUs through the same :class:`~rlsched.live.telemetry.NvmlSource` as the
local backend, or through the fake NVML where the node has no driver.

A node that leaves takes its devices out of the view, and its running
attempts end as lost (:data:`~rlsched.live.lifecycle.LOST`); the control loop
retries them elsewhere. Ray's own task retries are off (``max_retries=0``):
retries are the control loop's, so they are recorded in the store.

Ray tasks live as long as the driver that submitted them: when ``serve``
restarts, attempts it had running on Ray are lost and run again.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rlsched.errors import InputError
from rlsched.live.backends import Backend, LiveDevice
from rlsched.live.lifecycle import LAUNCH_FAILED, LOST, AttemptRef, AttemptSpec
from rlsched.live.telemetry import FakeNvml, NvmlSource, NvmlUnavailable, unhealthy_sample
from rlsched.pool import identical_pool, model_for_gpu
from rlsched.view import DeviceTelemetry

SLOT = re.compile(r"^gpu_slot_(\d+)$")
#: the share of a ``gpu_slot_K`` one attempt asks for: pinning, not packing
SLOT_SHARE = 0.01
#: seconds a telemetry sample or the node list stays fresh
TELEMETRY_TTL_S = 0.5
NODES_TTL_S = 0.5
#: seconds after a cancel before the task's worker is killed outright
FORCE_AFTER_S = 3.0

START_HELP = ("start every node with one gpu_slot_K resource per GPU, e.g. for two GPUs: "
              "ray start --head --num-gpus=2 --resources='{\"gpu_slot_0\": 1, \"gpu_slot_1\": 1}'")


def slot_resources(n_gpus: int) -> dict[str, float]:
    """The custom resources a node with ``n_gpus`` GPUs declares."""
    return {f"gpu_slot_{k}": 1.0 for k in range(n_gpus)}


@ray.remote(num_cpus=0, max_restarts=0)
class NodeTelemetry:
    """Telemetry of one node's GPUs, read where they are."""

    def __init__(self, slots: list[int]) -> None:
        self.slots = slots
        try:
            self.source = NvmlSource()
            self.fake = False
        except (NvmlUnavailable, ImportError):
            self.source = NvmlSource(FakeNvml(identical_pool(max(slots) + 1)))
            self.fake = True

    def hostname(self) -> str:
        return socket.gethostname()

    def infos(self) -> list[Any]:
        by_index = {d.index: d for d in self.source.devices}
        return [by_index.get(k) for k in self.slots]

    def sample(self) -> list[DeviceTelemetry | None]:
        by_index = {s.index: s for s in self.source.sample()}
        return [by_index.get(k) for k in self.slots]


def run_attempt(command: str, env: dict[str, str], workdir: str | None,
                log: str) -> tuple[int, bytes | None]:
    """Body of an attempt's Ray task: run the command in a process group of
    its own and wait. Output goes to ``log`` where that path exists on this
    node (same machine, shared filesystem); else it comes back to the daemon.
    A cancel (KeyboardInterrupt in this worker) kills the whole group, and so
    does a watchdog in the group when this worker dies (its raylet lost):
    no orphan keeps a GPU that the scheduler has given to someone else."""
    full_env = dict(os.environ)  # CUDA_VISIBLE_DEVICES comes from the runtime env
    full_env.update(env)
    wrapped = (f"( while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; kill -KILL 0 ) "
               f">/dev/null 2>&1 &\nwatchdog=$!\n( eval \"$1\" ) ; code=$?\n"
               f"kill $watchdog 2>/dev/null\nexit $code")
    try:
        out: Any = open(log, "ab")
        captured = False
    except OSError:
        out, captured = subprocess.PIPE, True
    try:
        proc = subprocess.Popen(["sh", "-c", wrapped, "rlsched-attempt", command], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
                                cwd=os.path.expanduser(workdir) if workdir else None,
                                start_new_session=True)
    except (OSError, ValueError) as e:  # a missing workdir, a bad environment: this attempt's
        message = f"rlsched: could not start: {type(e).__name__}: {e}\n".encode()
        if captured:
            return LAUNCH_FAILED, message
        out.write(message)
        out.close()
        return LAUNCH_FAILED, None
    try:
        data, _ = proc.communicate()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        raise
    finally:
        if not captured:
            out.close()
    return proc.returncode, data if captured else None


_run_attempt = ray.remote(max_retries=0)(run_attempt)


class RayBackend(Backend):
    """Every ``gpu_slot_K`` of every alive node of a Ray cluster.

    :param address: ``auto``, ``HOST:PORT`` or ``ray://...`` of a running
        cluster; None starts a Ray instance on this machine, with a slot for
        each of ``local_gpus`` GPUs
    :param local_gpus: GPUs of a Ray started here (None: as many as NVML sees)
    """

    name = "ray"

    def __init__(self, address: str | None = None, local_gpus: int | None = None) -> None:
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False,
                                      "logging_level": logging.WARNING}
            if address is None:
                n = local_gpus if local_gpus is not None else _local_gpu_count()
                kwargs.update(num_gpus=n, resources=slot_resources(n))
                self._owns_ray = True
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise InputError(f"--address {address}",
                                 f"cannot connect to a Ray cluster ({e})") from None
        self._keys: dict[tuple[str, int], int] = {}
        self._actors: dict[str, Any] = {}
        self._hosts: dict[str, str] = {}
        self._infos: dict[str, list[Any]] = {}
        self._refs: dict[int, tuple[Any, str]] = {}  # attempt id -> (ref, node id)
        self._killed: dict[int, float] = {}  # attempt id -> first kill
        self._nodes_at = -1.0
        self._alive: dict[str, list[int]] = {}
        self._samples: dict[int, DeviceTelemetry] = {}
        self._samples_at = -1.0
        self._live: list[LiveDevice] = []
        self._refresh(force=True)
        if not self._live:
            raise InputError(f"--address {address or '(local Ray)'}",
                             f"the Ray cluster has no gpu_slot_K resources; {START_HELP}")

    # ------------------------------------------------------------------ devices
    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._nodes_at < NODES_TTL_S:
            return
        self._nodes_at = now
        alive: dict[str, list[int]] = {}
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            slots = sorted(int(m.group(1)) for r in node.get("Resources", {})
                           if (m := SLOT.match(r)))
            if slots:
                alive[node["NodeID"]] = slots
        for node_id, slots in alive.items():
            if node_id not in self._actors:
                self._join(node_id, slots)
        names = [self._hosts.get(n) for n in alive]
        for node_id in alive:  # several nodes on one machine (containers, tests)
            host = self._hosts.get(node_id)
            if host and names.count(host) > 1 and not host.endswith(node_id[:6]):
                self._hosts[node_id] = f"{host}/{node_id[:6]}"
        for node_id in list(self._actors):
            if node_id not in alive:
                self._actors.pop(node_id)
        live = []
        for node_id, slots in sorted(alive.items(), key=lambda kv: (self._hosts.get(kv[0], ""),
                                                                    kv[0])):
            if node_id not in self._actors:
                continue
            for slot, info in zip(slots, self._infos[node_id]):
                if info is None:
                    continue
                key = self._keys.setdefault((node_id, slot), len(self._keys))
                live.append(LiveDevice(key, info, model_for_gpu(
                    info.name, info.memory_gib, info.power_limit_w, info.max_clock_mhz),
                    self._hosts[node_id]))
        self._alive = alive
        self._live = sorted(live, key=lambda d: d.key)
        self._where = {k: node_slot for node_slot, k in self._keys.items()}

    def _join(self, node_id: str, slots: list[int]) -> None:
        """Start the telemetry actor of a node that joined."""
        actor = NodeTelemetry.options(  # type: ignore[attr-defined]  # added by @ray.remote
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(slots)
        try:
            host, infos = ray.get([actor.hostname.remote(), actor.infos.remote()], timeout=60)
        except (ray.exceptions.RayError, TimeoutError):
            ray.kill(actor)
            return  # not reachable now; tried again on a later refresh
        self._actors[node_id], self._hosts[node_id], self._infos[node_id] = actor, host, infos

    def devices(self) -> list[LiveDevice]:
        self._refresh()
        return self._live

    def sample(self, n_tasks: dict[int, int]) -> dict[int, DeviceTelemetry]:
        now = time.monotonic()
        if now - self._samples_at >= TELEMETRY_TTL_S:
            self._samples_at = now
            nodes = list(self._actors.items())
            refs = [actor.sample.remote() for _, actor in nodes]
            for (node_id, _), ref in zip(nodes, refs):
                try:
                    samples = ray.get(ref, timeout=5)
                except (ray.exceptions.RayError, TimeoutError):
                    samples = [None] * len(self._alive.get(node_id, []))
                for slot, s in zip(self._alive.get(node_id, []), samples):
                    key = self._keys.get((node_id, slot))
                    if key is None:
                        continue
                    if s is None:  # unreachable: out of the running until it answers
                        info = self._infos[node_id][self._alive[node_id].index(slot)]
                        s = unhealthy_sample(info, slot)
                    self._samples[key] = s
        return {d.key: self._samples[d.key]._replace(index=d.key, n_tasks=n_tasks.get(d.key, 0))
                for d in self._live if d.key in self._samples}

    # ------------------------------------------------------------------ attempts
    def start(self, attempt: AttemptSpec) -> int | None:
        env = {k: str(v) for k, v in attempt.env.items()}
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        if attempt.device is None:
            env["CUDA_VISIBLE_DEVICES"] = ""
            ref = _run_attempt.options(num_cpus=1, num_gpus=0).remote(
                attempt.command, env, attempt.workdir, str(attempt.log))
            self._refs[attempt.attempt_id] = (ref, "")
            return None
        node_id, slot = self._where[attempt.device]
        ref = _run_attempt.options(
            num_cpus=0, num_gpus=0, resources={f"gpu_slot_{slot}": SLOT_SHARE},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            runtime_env={"env_vars": {"CUDA_VISIBLE_DEVICES": str(slot),
                                      "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}},
        ).remote(attempt.command, env, attempt.workdir, str(attempt.log))
        self._refs[attempt.attempt_id] = (ref, node_id)
        return None

    def exit_code(self, attempt: AttemptRef) -> int | None:
        held = self._refs.get(attempt.id)
        if held is None:  # started by a daemon before this one: Ray ended it with its driver
            return LOST
        ref, node_id = held
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            if node_id:
                self._refresh()
                if node_id not in self._alive:  # its node left: lost, whatever Ray says later
                    ray.cancel(ref, force=False)
                    return LOST
            return None
        try:
            code, output = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return -int(signal.SIGKILL)
        except ray.exceptions.RayError:
            return LOST
        if output:
            with open(attempt.log, "ab") as f:
                f.write(output)
        return int(code)

    def kill(self, attempt: AttemptRef) -> None:
        """Interrupt the task (its group is killed); if it still runs a few
        seconds later (not started yet, or busy in Ray), kill its worker: the
        watchdog in its group then kills the command."""
        held = self._refs.get(attempt.id)
        if held is None:
            return
        first = self._killed.setdefault(attempt.id, time.monotonic())
        force = time.monotonic() - first > FORCE_AFTER_S
        try:
            ray.cancel(held[0], force=force)
        except (ray.exceptions.RayError, ValueError):
            pass

    def release(self, attempt: AttemptRef) -> None:
        self._refs.pop(attempt.id, None)
        self._killed.pop(attempt.id, None)

    def close(self) -> None:
        for actor in self._actors.values():
            try:
                ray.kill(actor)
            except ray.exceptions.RayError:
                pass
        self._actors.clear()
        if self._owns_ray:
            ray.shutdown()


def _local_gpu_count() -> int:
    try:
        source = NvmlSource()
    except (NvmlUnavailable, ImportError):
        return 0
    n = len(source.devices)
    source.close()
    return n

