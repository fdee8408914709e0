"""SPEC strings name workloads and pools on the command line.

Workloads::

    wfcommons:PATH              WfFormat JSON file, or a directory of them
    stg:PATH                    .stg file or directory (optima from optimal_*.csv)
    jobs:PATH                   job-file YAML, or a directory of them
    synthetic:NAME[?k=v&...]    generator NAME (layered, pipeline, sweep, mixed, gangs)
    trace:gavel:PATH[?k=v&...]  Gavel's Philly job traces (file or folder), measured speeds

Pools::

    identical:N[?model=NAME]    N devices of one model (default the rtx-3090)
    preset:NAME                 a named pool (workstation-4, ...)
    file:PATH                   a pool YAML file

Prefixes are looked up in explicit registries, so a later package (the live
runtime, the learned policy) adds its own by adding an entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from urllib.parse import parse_qsl

from rlsched.errors import InputError
from rlsched.pool import Pool, identical_pool, load_pool_file, preset_pool
from rlsched.workload import Instance


@dataclass(frozen=True)
class WorkloadSource:
    """A resolved workload SPEC: the instances it yields for a seed.

    File sources yield the same instances for every seed; generators draw new
    ones from the seed.
    """

    spec: str
    draw: Callable[[int], list[Instance]]
    seeded: bool
    #: what a report on it should say (what a trace's filters kept)
    notes: tuple[str, ...] = ()

    def instances(self, seed: int) -> list[Instance]:
        return self.draw(seed)


def _files(module: str, loader: str) -> Callable[[str, str], WorkloadSource]:
    """A prefix of files read by ``module.loader``, imported when first used:
    ``serve`` resolves its pool here, and must not wait for the loaders'
    numpy to import before its first start."""
    def resolve(rest: str, spec: str) -> WorkloadSource:
        loaded = getattr(importlib.import_module(module), loader)(rest)
        return WorkloadSource(spec, lambda seed: loaded, seeded=False)
    return resolve


def _synthetic(rest: str, spec: str) -> WorkloadSource:
    from rlsched.sources.synthetic import generate

    name, _, query = rest.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    generate(name, params, 0, spec)  # fail now on a bad name or parameter
    return WorkloadSource(spec, lambda seed: [generate(name, params, seed, spec)], seeded=True)


def _trace(rest: str, spec: str) -> WorkloadSource:
    kind, sep, path = rest.partition(":")
    if kind != "gavel" or not sep:
        raise InputError(spec, "unknown trace format (use trace:gavel:PATH)")
    from rlsched.sources.gavel import load_gavel

    loaded, note = load_gavel(path)
    return WorkloadSource(spec, lambda seed: loaded, seeded=False, notes=(note,))


WORKLOAD_PREFIXES: dict[str, Callable[[str, str], WorkloadSource]] = {
    "wfcommons": _files("rlsched.sources.wfcommons", "load_wfcommons"),
    "stg": _files("rlsched.sources.stg", "load_stg"),
    "jobs": _files("rlsched.sources.jobfile", "load_jobfiles"),
    "synthetic": _synthetic,
    "trace": _trace,
}


def _identical(rest: str, spec: str) -> Pool:
    count, _, query = rest.partition("?")
    params = dict(parse_qsl(query))
    try:
        n = int(count)
    except ValueError:
        raise InputError(spec, f"'{count}' is not a device count") from None
    return identical_pool(n, params.get("model", "rtx-3090"), spec)


POOL_PREFIXES: dict[str, Callable[[str, str], Pool]] = {
    "identical": _identical,
    "preset": lambda rest, spec: preset_pool(rest, spec),
    "file": lambda rest, spec: load_pool_file(rest),
}


@cache
def resolve_workload(spec: str) -> WorkloadSource:
    """The workload a SPEC names; :class:`InputError` for an unknown or bad one."""
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix not in WORKLOAD_PREFIXES:
        raise InputError(spec, "unknown workload SPEC (use "
                         + ", ".join(f"{p}:..." for p in WORKLOAD_PREFIXES) + ")")
    return WORKLOAD_PREFIXES[prefix](rest, spec)


def resolve_pool(spec: str) -> Pool:
    """The pool a SPEC names; :class:`InputError` for an unknown or bad one."""
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix not in POOL_PREFIXES:
        raise InputError(spec, "unknown pool SPEC (use "
                         + ", ".join(f"{p}:..." for p in POOL_PREFIXES) + ")")
    return POOL_PREFIXES[prefix](rest, spec)
