"""The Ray backend: the pool is every GPU of a Ray cluster.

Ray picks a GPU itself for a task that asks ``num_gpus=1``, so the placement
a scheduler chose would be lost. Each node therefore declares one custom
resource per GPU, ``gpu_slot_K`` for its local GPU K (``ray start
--resources='{"gpu_slot_0": 1, "gpu_slot_1": 1}'``). An attempt on node N,
GPU K is a Ray actor (:class:`AttemptRunner`) with ``num_gpus=0, num_cpus=0``, a small share of
``gpu_slot_K``, a hard node affinity to N, and ``CUDA_VISIBLE_DEVICES=K``
in its runtime environment: it runs there and nowhere else, and several of
our tasks may share a GPU where the scheduler (and the shield) say so. A
gang (a task of several GPUs) is one actor holding a share of each of its
``gpu_slot_K`` on one node, with ``CUDA_VISIBLE_DEVICES`` listing them all.

One small actor per node (:class:`NodeTelemetry`, ``num_cpus=0``) reads that
node's GPUs through the same :class:`~rlsched.live.telemetry.NvmlSource` as the
local backend, or through the fake NVML where the node has no driver.

A node that leaves takes its devices out of the view, and its running
attempts end as lost (:data:`~rlsched.live.lifecycle.LOST`); the control loop
retries them elsewhere. Ray's own restarts are off (``max_restarts=0``):
retries are the control loop's, so they are recorded in the store.

Each attempt's actor is *detached* and named after the attempt, so it outlives
the ``serve`` that started it (a Ray task would die with its driver): a
``serve`` killed and started again on the same cluster finds the attempts
still running by name and adopts them, and no task runs twice. The actor is
killed once its attempt is recorded. (A Ray that ``serve`` started itself,
without ``--address``, ends with it, and its attempts with it.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rlsched.errors import InputError
from rlsched.live.backends import Backend, LiveDevice
from rlsched.live.executor import visible_devices
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


#: the Ray namespace of the attempt actors, so a new daemon finds them by name
NAMESPACE = "rlsched"


def actor_name(log: Path | str) -> str:
    """The name of an attempt's actor: from its log's path, which is unique to
    the attempt and its state directory, so a restarted daemon derives it again."""
    return "rlsched-attempt-" + hashlib.sha1(str(log).encode()).hexdigest()[:24]


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=2)  # type: ignore[call-overload]
class AttemptRunner:
    """One attempt, as a detached actor named after it (:func:`actor_name`).

    It runs the command in a process group of its own as it is created, and
    :meth:`wait` returns its exit code. Being detached, it outlives the daemon
    that started it: a daemon killed with -9 and started again finds it by
    name and waits on it, instead of running the task a second time. Output
    goes to ``log`` where that path exists on this node (same machine, shared
    filesystem); else :meth:`wait` returns it to the daemon. A watchdog in the
    group kills the command if this actor's worker dies (its node lost, or
    :func:`ray.kill`): no orphan keeps a GPU the scheduler gave to someone else.
    """

    def __init__(self, command: str, env: dict[str, str], workdir: str | None,
                 log: str) -> None:
        full_env = dict(os.environ)  # CUDA_VISIBLE_DEVICES comes from the runtime env
        full_env.update(env)
        wrapped = (f"( while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; kill -KILL 0 ) "
                   f">/dev/null 2>&1 &\nwatchdog=$!\n( eval \"$1\" ) ; code=$?\n"
                   f"kill $watchdog 2>/dev/null\nexit $code")
        self.failed: bytes | None = None
        self.proc: subprocess.Popen | None = None
        try:
            self.out: Any = open(log, "ab")
            self.captured = False
        except OSError:
            self.out, self.captured = subprocess.PIPE, True
        try:
            self.proc = subprocess.Popen(
                ["sh", "-c", wrapped, "rlsched-attempt", command], stdout=self.out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
                cwd=os.path.expanduser(workdir) if workdir else None, start_new_session=True)
        except (OSError, ValueError) as e:  # a missing workdir, a bad environment
            self.failed = f"rlsched: could not start: {type(e).__name__}: {e}\n".encode()
            if not self.captured:
                self.out.write(self.failed)

    def wait(self) -> tuple[int, bytes | None]:
        """The command's exit code once it ends, and its output if no log took it."""
        if self.proc is None:
            return LAUNCH_FAILED, self.failed if self.captured else None
        try:
            data, _ = self.proc.communicate()
        finally:
            if not self.captured:
                self.out.close()
        return self.proc.returncode, data if self.captured else None

    def kill(self) -> None:
        """Kill the command's whole process group (cancel, timeout)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


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
        #: attempt id -> (its wait ref, its node id or "" where unknown, its actor)
        self._refs: dict[int, tuple[Any, str, Any]] = {}
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
        named: dict[str, Any] = {"name": actor_name(attempt.log), "namespace": NAMESPACE,
                                 "lifetime": "detached"}
        if attempt.device is None:
            env["CUDA_VISIBLE_DEVICES"] = ""
            actor = AttemptRunner.options(  # type: ignore[attr-defined]  # added by @ray.remote
                num_cpus=1, num_gpus=0, **named).remote(
                attempt.command, env, attempt.workdir, str(attempt.log))
            self._refs[attempt.attempt_id] = (actor.wait.remote(), "", actor)
            return None
        node_id, _ = self._where[attempt.device]
        slots = [self._where[key][1] for key in attempt.devices]
        if any(self._where[key][0] != node_id for key in attempt.devices):
            raise ValueError(f"a gang's devices {list(attempt.devices)} are not on one node")
        actor = AttemptRunner.options(  # type: ignore[attr-defined]
            num_cpus=0, num_gpus=0, resources={f"gpu_slot_{k}": SLOT_SHARE for k in slots},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            runtime_env={"env_vars": {"CUDA_VISIBLE_DEVICES": visible_devices(tuple(slots)),
                                      "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}}, **named,
        ).remote(attempt.command, env, attempt.workdir, str(attempt.log))
        self._refs[attempt.attempt_id] = (actor.wait.remote(), node_id, actor)
        return None

    def recover(self, attempts: list[AttemptRef]) -> None:
        """Adopt the attempts a previous daemon left running: their actors are
        detached, so they are still there, by name, unless their node left."""
        for attempt in attempts:
            try:
                actor = ray.get_actor(actor_name(attempt.log), namespace=NAMESPACE)
            except ValueError:  # gone with its node, or Ray itself was restarted
                continue
            self._refs[attempt.id] = (actor.wait.remote(), "", actor)

    def exit_code(self, attempt: AttemptRef) -> int | None:
        held = self._refs.get(attempt.id)
        if held is None:  # its actor is gone (its node, or the Ray it ran on): lost
            return LOST
        ref, node_id, actor = held
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            if node_id:
                self._refresh()
                if node_id not in self._alive:  # its node left: lost, whatever Ray says later
                    _kill_actor(actor)
                    return LOST
            return None
        try:
            code, output = ray.get(ref)
        except ray.exceptions.RayError:  # its worker or node died
            return LOST
        if output:
            with open(attempt.log, "ab") as f:
                f.write(output)
        return int(code)

    def kill(self, attempt: AttemptRef) -> None:
        """Kill the command's group; if the attempt still runs a few seconds
        later (not started yet, or busy in Ray), kill its actor: the watchdog
        in its group then kills the command."""
        held = self._refs.get(attempt.id)
        if held is None:
            return
        first = self._killed.setdefault(attempt.id, time.monotonic())
        if time.monotonic() - first > FORCE_AFTER_S:
            _kill_actor(held[2])
            return
        try:
            held[2].kill.remote()
        except ray.exceptions.RayError:
            pass

    def release(self, attempt: AttemptRef) -> None:
        """The attempt ended and is recorded: its detached actor goes too."""
        held = self._refs.pop(attempt.id, None)
        self._killed.pop(attempt.id, None)
        if held is not None:
            _kill_actor(held[2])

    def close(self) -> None:
        for actor in self._actors.values():
            try:
                ray.kill(actor)
            except ray.exceptions.RayError:
                pass
        self._actors.clear()
        if self._owns_ray:
            ray.shutdown()


def _kill_actor(actor: Any) -> None:
    try:
        ray.kill(actor)
    except (ray.exceptions.RayError, ValueError):
        pass


def _local_gpu_count() -> int:
    try:
        source = NvmlSource()
    except (NvmlUnavailable, ImportError):
        return 0
    n = len(source.devices)
    source.close()
    return n

