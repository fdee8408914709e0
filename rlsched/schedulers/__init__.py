"""Every policy behind one interface, looked up by name.

``make_scheduler("heft")`` builds a heuristic; prefixed names
(``rl:PATH``) are resolved by :data:`SCHEDULER_PREFIXES`, where the learned
policy's package registers its loader, so the core never imports it.
``oracle:NAME`` is heuristic NAME told the true runtimes: a bound, run by
``evaluate`` with exact estimates, never offered to ``serve``.
"""

from __future__ import annotations

from collections.abc import Callable

from rlsched.errors import InputError
from rlsched.schedulers.backfill import BackfillScheduler
from rlsched.schedulers.base import GreedyIdleScheduler, Scheduler
from rlsched.schedulers.heft import HeftScheduler
from rlsched.schedulers.las import LasScheduler
from rlsched.schedulers.search import AnnealingScheduler, GeneticScheduler
from rlsched.schedulers.share import ShareScheduler
from rlsched.schedulers.simple import (
    CriticalPathScheduler,
    FifoScheduler,
    RandomScheduler,
    SjfScheduler,
)
from rlsched.schedulers.tetris import TetrisScheduler

SCHEDULERS: dict[str, Callable[[], Scheduler]] = {
    "random": RandomScheduler,
    "fifo": FifoScheduler,
    "sjf": SjfScheduler,
    "cp": CriticalPathScheduler,
    "tetris": TetrisScheduler,
    "share": ShareScheduler,
    "heft": HeftScheduler,
    "las": LasScheduler,
    "backfill": BackfillScheduler,
    "ga": GeneticScheduler,
    "sa": AnnealingScheduler,
}

#: schedulers that take a search budget
SEARCH_SCHEDULERS: dict[str, Callable[[float, int | None], Scheduler]] = {
    "ga": GeneticScheduler, "sa": AnnealingScheduler}

#: ``prefix -> loader(rest_of_spec)`` for schedulers that live outside the core
SCHEDULER_PREFIXES: dict[str, Callable[[str], Scheduler]] = {}
#: ``prefix -> check(rest_of_spec)`` for prefixed schedulers slow to load (a
#: learned policy: torch and a checkpoint): a cheap check that raises
#: :class:`InputError` for a spec that cannot load, so that ``serve`` can
#: refuse it at once and load the rest in the background
SLOW_PREFIX_CHECKS: dict[str, Callable[[str], None]] = {}


#: the prefix of a bound: a heuristic that reads the true runtimes
ORACLE = "oracle:"
#: heuristics that read no runtime: told the truth, they would be themselves
RUNTIME_BLIND = ("random", "fifo", "las")


def is_oracle(scheduler: Scheduler) -> bool:
    """Whether ``scheduler`` is a bound (``oracle:NAME``), not a scheduler."""
    return scheduler.oracle


def checked_if_slow(spec: str) -> bool:
    """Whether ``spec`` names a scheduler slow to load (:data:`SLOW_PREFIX_CHECKS`),
    having made its cheap check (:class:`InputError` if it cannot load); a
    caller then loads it where and when it runs it."""
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix not in SLOW_PREFIX_CHECKS:
        return False
    SLOW_PREFIX_CHECKS[prefix](rest)
    return True


def make_scheduler(spec: str, search_budget: float = 2.0,
                   search_evaluations: int | None = None) -> Scheduler:
    """A fresh scheduler for a name (``heft``) or a prefixed spec (``rl:PATH``).

    :param search_budget: seconds per plan of the search schedulers (ga, sa)
    :param search_evaluations: schedules per plan instead (deterministic)
    """
    if spec.startswith(ORACLE):
        inner = spec[len(ORACLE):]
        if inner not in SCHEDULERS or inner in RUNTIME_BLIND:
            raise InputError("--scheduler", f"'{spec}': an oracle runs a heuristic that reads "
                             f"runtimes on the truth; '{inner}' is not one (use one of "
                             f"{', '.join(s for s in SCHEDULERS if s not in RUNTIME_BLIND)})")
        sched = make_scheduler(inner, search_budget, search_evaluations)
        sched.oracle, sched.name = True, spec
        return sched
    if spec in SEARCH_SCHEDULERS:
        return SEARCH_SCHEDULERS[spec](search_budget, search_evaluations)
    if spec in SCHEDULERS:
        return SCHEDULERS[spec]()
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in SCHEDULER_PREFIXES:
        return SCHEDULER_PREFIXES[prefix](rest)
    # rl: registers itself when agents is imported (torch): named either way
    known = ", ".join(list(SCHEDULERS) + [
        f"{p}:PATH" for p in sorted({*SCHEDULER_PREFIXES, "rl"})] + [f"{ORACLE}NAME"])
    raise InputError("--scheduler", f"unknown scheduler '{spec}' (known: {known})")


__all__ = ["ORACLE", "SCHEDULERS", "is_oracle", "SCHEDULER_PREFIXES", "SLOW_PREFIX_CHECKS",
           "checked_if_slow",
           "GreedyIdleScheduler", "Scheduler", "make_scheduler"]
