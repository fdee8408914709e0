"""The pool model: GPU models, devices, and the presets and files that build pools.

Speeds are relative to the reference device, an RTX 3090 (1.0 for both kinds),
and derived from public specifications:

* compute-bound speed: the geometric mean of the FP32 and the dense FP16
  tensor-core throughput ratios to the RTX 3090 (training kernels use both);
* memory-bound speed: the memory-bandwidth ratio.

A task of ``work`` seconds of kind ``k`` alone on device ``d`` runs
``work / speed(d, k)`` seconds. Tasks may share a device while memory allows;
with ``n`` tasks (and external load ``e``) each runs at
``speed / (1 + interference * (n - 1 + e))``. With ``interference >= 1``
sharing never raises a device's total throughput, which keeps the lower bounds
of :mod:`rlsched.metrics` honest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from rlsched.errors import InputError

#: GiB of slack when asking whether memory fits: sums of float GiB figures
#: (a task of exactly a device's memory, three of a third) must still fit
MEMORY_TOLERANCE_GIB = 1e-9


def fits_memory(need_gib: float, free_gib: float) -> bool:
    """Whether ``need_gib`` fits in ``free_gib``, up to :data:`MEMORY_TOLERANCE_GIB`:
    the one memory rule of the simulator, the schedulers, the encoder and the shield."""
    return need_gib <= free_gib + MEMORY_TOLERANCE_GIB


@dataclass(frozen=True)
class GpuModel:
    """A GPU model with the numbers the simulator and telemetry need.

    :param name: catalogue key, e.g. ``"rtx-3090"``
    :param compute_speed: speed on compute-bound tasks, relative to the reference
    :param memory_speed: speed on memory-bound tasks, relative to the reference
    :param memory_gib: device memory in GiB
    :param power_w: board power limit in watts
    :param idle_w: power drawn when idle
    :param max_clock_mhz: maximum SM (boost) clock
    """

    name: str
    compute_speed: float
    memory_speed: float
    memory_gib: float
    power_w: float
    idle_w: float
    max_clock_mhz: float

    def speed(self, kind: str) -> float:
        return self.memory_speed if kind == "memory" else self.compute_speed


def _from_specs(name: str, fp32: float, fp16_tensor: float, bandwidth: float,
                memory_gib: float, power_w: float, idle_w: float, clock: float) -> GpuModel:
    ref_fp32, ref_fp16, ref_bw = 35.6, 71.0, 936.0  # RTX 3090
    compute = math.sqrt((fp32 / ref_fp32) * (fp16_tensor / ref_fp16))
    return GpuModel(name, round(compute, 3), round(bandwidth / ref_bw, 3), memory_gib,
                    power_w, idle_w, clock)


#: Public specifications: FP32 TFLOPS, dense FP16 tensor TFLOPS, memory GB/s,
#: memory GiB, board power W, idle W (typical), boost clock MHz. The older
#: cards of GPU-cluster traces (Gavel's K80/P100/V100) from NVIDIA's data
#: sheets: a K80 is one of the two GK210 GPUs on its board (NVML sees each),
#: with no faster FP16 path; a P100 is the 16 GB PCIe card, whose FP16 runs at
#: twice FP32 without tensor cores; a V100-16GB is the SXM2 card.
CATALOGUE: dict[str, GpuModel] = {
    m.name: m
    for m in (
        _from_specs("rtx-3090", 35.6, 71.0, 936, 24, 350, 30, 1695),
        _from_specs("rtx-4090", 82.6, 165.2, 1008, 24, 450, 25, 2520),
        _from_specs("a100-80gb", 19.5, 312.0, 2039, 80, 400, 50, 1410),
        _from_specs("h100-sxm", 67.0, 989.0, 3350, 80, 700, 70, 1980),
        _from_specs("rtx-a6000", 38.7, 154.8, 768, 48, 300, 25, 1800),
        _from_specs("l4", 30.3, 121.0, 300, 24, 72, 16, 2040),
        _from_specs("t4", 8.1, 65.0, 320, 16, 70, 10, 1590),
        _from_specs("v100-32gb", 15.7, 125.0, 900, 32, 300, 40, 1530),
        _from_specs("v100-16gb", 15.7, 125.0, 900, 16, 300, 40, 1530),
        _from_specs("p100", 9.3, 18.7, 732, 16, 250, 30, 1303),
        _from_specs("k80", 4.37, 4.37, 240, 12, 150, 25, 875),
    )
}

REFERENCE_MODEL = "rtx-3090"

#: words of an NVML device name that identify a catalogue model, most specific first
_NAME_MARKERS = (("h100", "h100-sxm"), ("a100", "a100-80gb"), ("a6000", "rtx-a6000"),
                 ("4090", "rtx-4090"), ("3090", "rtx-3090"), ("v100", "v100-32gb"),
                 ("p100", "p100"), ("k80", "k80"), ("l4", "l4"), ("t4", "t4"))


def model_for_gpu(name: str, memory_gib: float, power_w: float = 0.0,
                  max_clock_mhz: float = 0.0) -> GpuModel:
    """The performance model of a real GPU from what NVML reports: the
    catalogue's speeds where its name is known (with the memory the card
    really has), else reference speeds, so the scheduler still sees memory."""
    words = name.lower().replace("-", " ").replace("_", " ").split()
    for marker, key in _NAME_MARKERS:
        if any(w == marker or w.startswith(marker) for w in words):
            base = CATALOGUE[key]
            return replace(base, memory_gib=memory_gib or base.memory_gib,
                           power_w=power_w or base.power_w,
                           max_clock_mhz=max_clock_mhz or base.max_clock_mhz)
    return GpuModel(name, 1.0, 1.0, memory_gib, power_w or 300.0, 30.0, max_clock_mhz or 1500.0)


@dataclass(frozen=True)
class Device:
    """One GPU of the pool: its model, its index in the pool, its host."""

    index: int
    model: GpuModel
    host: str = "localhost"

    @property
    def name(self) -> str:
        return f"{self.host}:{self.index}:{self.model.name}"


@dataclass(frozen=True)
class Pool:
    """A set of GPUs, possibly of several models and hosts.

    :param name: shown in tables and plots
    :param devices: the GPUs, indexed 0..n-1
    :param interference: slowdown coefficient for tasks sharing a device (>= 1)
    :param hosts_linked: whether a gang (a task of several GPUs) may span
        hosts; if not, each gang runs on one host
    :param across_hosts: a gang spanning hosts runs at this fraction of its
        speed on one host (see :mod:`rlsched.gangs`)
    """

    name: str
    devices: tuple[Device, ...]
    interference: float = 1.1
    hosts_linked: bool = False
    across_hosts: float = 0.6

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def max_memory(self) -> float:
        return max(d.model.memory_gib for d in self.devices)

    def max_speed(self, kind: str) -> float:
        return max(d.model.speed(kind) for d in self.devices)

    @property
    def hosts(self) -> dict[str, tuple[int, ...]]:
        """The device indices of each host, in pool order."""
        out: dict[str, list[int]] = {}
        for d in self.devices:
            out.setdefault(d.host, []).append(d.index)
        return {h: tuple(v) for h, v in out.items()}

    @property
    def largest_gang(self) -> int:
        """The most GPUs one task may take: the largest host's, or every
        device where hosts are linked."""
        return len(self.devices) if self.hosts_linked else max(map(len, self.hosts.values()))


def build_pool(name: str, models: list[GpuModel], interference: float = 1.1,
               host: str = "localhost") -> Pool:
    return Pool(name, tuple(Device(i, m, host) for i, m in enumerate(models)), interference)


PRESETS: dict[str, list[str]] = {
    # A research workstation of mixed generations.
    "workstation-4": ["a100-80gb", "rtx-4090", "rtx-3090", "rtx-3090"],
    # A consumer box with two cards of different generations.
    "workstation-2": ["rtx-4090", "rtx-3090"],
    # An eight-GPU server of one model.
    "dgx-a100": ["a100-80gb"] * 8,
    # A mixed lab server.
    "lab-8": ["a100-80gb", "a100-80gb", "rtx-a6000", "rtx-a6000",
              "rtx-4090", "rtx-3090", "rtx-3090", "t4"],
    # A small lab of the three generations in GPU-cluster traces (Gavel, Philly).
    "lab-kpv": ["v100-16gb", "p100", "p100", "k80", "k80", "k80"],
    # Equal numbers of each, as in Gavel's heterogeneous simulations.
    "kpv-12": ["v100-16gb"] * 4 + ["p100"] * 4 + ["k80"] * 4,
}


def _model(name: str, source: str) -> GpuModel:
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise InputError(source, f"unknown GPU model '{name}' (known: {known})") from None


def identical_pool(n: int, model: str = REFERENCE_MODEL, source: str = "identical") -> Pool:
    if n < 1:
        raise InputError(source, f"a pool needs at least one device, not {n}")
    return build_pool(f"identical:{n}", [_model(model, source)] * n)


def preset_pool(name: str, source: str = "preset") -> Pool:
    try:
        models = PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise InputError(source, f"unknown pool preset '{name}' (known: {known})") from None
    return build_pool(name, [_model(m, source) for m in models])


def load_pool_file(path: str | Path) -> Pool:
    """Load a pool from YAML::

        name: my-box            # optional
        interference: 1.1       # optional, >= 1
        hosts_linked: false     # optional: may a multi-GPU task span hosts?
        across_hosts: 0.6       # optional: its speed across hosts, against one host
        models:                 # optional: models not in the catalogue
          my-gpu: {compute_speed: 1.3, memory_speed: 1.1, memory_gib: 32,
                   power_w: 300, idle_w: 30, max_clock_mhz: 1800}
        devices:
          - a100-80gb           # a catalogue or custom model name
          - {model: rtx-3090, count: 2, host: node1}
    """
    import yaml  # here, not with the module: serve starts without it

    source = str(path)
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise InputError(source, f"cannot read pool file ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise InputError(source, f"not valid YAML ({_yaml_problem(e)})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
        raise InputError(source, "a pool file needs a 'devices' list")
    models = dict(CATALOGUE)
    for mname, spec in (doc.get("models") or {}).items():
        try:
            models[mname] = GpuModel(
                name=str(mname), compute_speed=float(spec["compute_speed"]),
                memory_speed=float(spec.get("memory_speed", spec["compute_speed"])),
                memory_gib=float(spec["memory_gib"]), power_w=float(spec.get("power_w", 300)),
                idle_w=float(spec.get("idle_w", 30)),
                max_clock_mhz=float(spec.get("max_clock_mhz", 1800)))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(source, f"model '{mname}': bad or missing field {e}") from None
        if models[mname].compute_speed <= 0 or models[mname].memory_gib <= 0:
            raise InputError(source, f"model '{mname}': speeds and memory must be positive")
    devices: list[Device] = []
    for entry in doc["devices"]:
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict) or "model" not in entry:
            raise InputError(source, f"device entry {entry!r} needs a 'model'")
        if entry["model"] not in models:
            known = ", ".join(sorted(models))
            raise InputError(source, f"unknown GPU model '{entry['model']}' (known: {known})")
        count = entry.get("count", 1)
        if not isinstance(count, int) or count < 1:
            raise InputError(source, f"device count must be a positive integer, not {count!r}")
        for _ in range(count):
            devices.append(Device(len(devices), models[entry["model"]],
                                  str(entry.get("host", "localhost"))))
    if not devices:
        raise InputError(source, "the pool has no devices")
    interference = doc.get("interference", 1.1)
    if not isinstance(interference, (int, float)) or interference < 1:
        raise InputError(source, f"interference must be a number >= 1, not {interference!r}")
    linked, across = _gang_options(doc, source)
    return Pool(str(doc.get("name", Path(path).stem)), tuple(devices), float(interference),
                linked, across)


def _gang_options(doc: dict, source: str) -> tuple[bool, float]:
    """A pool file's ``hosts_linked`` and ``across_hosts``, checked."""
    linked = doc.get("hosts_linked", False)
    if not isinstance(linked, bool):
        raise InputError(source, f"hosts_linked must be true or false, not {linked!r}")
    across = doc.get("across_hosts", 0.6)
    if isinstance(across, bool) or not isinstance(across, (int, float)) or not 0 < across <= 1:
        raise InputError(source, f"across_hosts must be a number in (0, 1], not {across!r}")
    return linked, float(across)


def _yaml_problem(e: Exception) -> str:
    """Where a ``yaml.YAMLError`` says the file went wrong."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or "parse error"
    return f"{problem} at line {mark.line + 1}" if mark is not None else problem
