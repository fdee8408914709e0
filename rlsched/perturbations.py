"""Perturbations of a simulated pool: what makes a device's real speed drift.

Three kinds, each switchable and seeded: thermal throttling (clock and speed
drop for a while), load from processes outside the scheduler (they take memory
and a share of the device), and a device failing and recovering (the tasks on
it are lost and must run again). A scheduler learns of them only through
telemetry.

Each device and kind has its own random stream, derived from the episode seed,
so the timeline of perturbations is the same whatever a scheduler does: two
schedulers run on one seed face the same weather.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rlsched.errors import InputError

THROTTLE, EXTERNAL, FAILURE = 0, 1, 2
NAMES = {"throttle": THROTTLE, "external": EXTERNAL, "failures": FAILURE}


@dataclass(frozen=True)
class Perturbations:
    """Which perturbations are on, and how often (seconds are means).

    :param throttle: thermal throttling episodes
    :param external: processes outside the scheduler
    :param failures: device failures and recoveries
    :param throttle_every: mean gap between throttling episodes on one device
    :param throttle_for: mean length of an episode
    :param throttle_factor: range of the speed (and clock) factor while throttled
    :param external_every: mean gap between external processes on one device
    :param external_for: mean lifetime of an external process
    :param external_load: range of its share of the device (0..1)
    :param external_memory: range of its memory in GiB
    :param fail_every: mean time between failures of one device
    :param fail_for: mean time to recover
    """

    throttle: bool = False
    external: bool = False
    failures: bool = False
    throttle_every: float = 1800.0
    throttle_for: float = 600.0
    throttle_factor: tuple[float, float] = (0.5, 0.8)
    external_every: float = 2400.0
    external_for: float = 900.0
    external_load: tuple[float, float] = (0.3, 1.0)
    external_memory: tuple[float, float] = (2.0, 10.0)
    fail_every: float = 14400.0
    fail_for: float = 300.0

    @classmethod
    def parse(cls, text: str) -> Perturbations:
        """``none``, ``all``, or a comma list of ``throttle,external,failures``."""
        words = {w.strip() for w in text.split(",") if w.strip()}
        if words <= {"none"}:
            return cls()
        if words == {"all"}:
            return cls(throttle=True, external=True, failures=True)
        unknown = words - set(NAMES)
        if unknown:
            raise InputError("--perturb", f"unknown perturbation(s) {', '.join(sorted(unknown))} "
                             "(use none, all, or a list of throttle, external, failures)")
        return cls(**{w: True for w in words})  # type: ignore[arg-type]  # only the flags

    @property
    def active(self) -> tuple[int, ...]:
        return tuple(k for k, on in ((THROTTLE, self.throttle), (EXTERNAL, self.external),
                                     (FAILURE, self.failures)) if on)

    def timeline(self, seed: int, device: int, kind: int) -> Timeline:
        """Endless ``(start, end, value)`` episodes of one kind on one device.

        ``value`` is ``(speed_factor,)`` for throttling, ``(load, memory_gib)``
        for an external process, ``()`` for a failure.
        """
        return Timeline(self, seed, device, kind)


class Timeline:
    """The iterator :meth:`Perturbations.timeline` returns: a plain object
    (not a generator) so that a simulation holding it can be copied."""

    def __init__(self, perturbations: Perturbations, seed: int, device: int, kind: int) -> None:
        p = perturbations
        self.rng = np.random.default_rng([seed, device, kind, 7919])
        self.kind = kind
        self.every, self.length = {THROTTLE: (p.throttle_every, p.throttle_for),
                                   EXTERNAL: (p.external_every, p.external_for),
                                   FAILURE: (p.fail_every, p.fail_for)}[kind]
        self.perturbations = p
        self.t = 0.0

    def __iter__(self) -> Iterator[tuple[float, float, tuple]]:
        return self

    def __next__(self) -> tuple[float, float, tuple]:
        rng, p = self.rng, self.perturbations
        start = self.t + rng.exponential(self.every)
        end = start + rng.exponential(self.length)
        if self.kind == THROTTLE:
            value: tuple = (float(rng.uniform(*p.throttle_factor)),)
        elif self.kind == EXTERNAL:
            value = (float(rng.uniform(*p.external_load)), float(rng.uniform(*p.external_memory)))
        else:
            value = ()
        self.t = end
        return float(start), float(end), value

    def copy(self) -> Timeline:
        twin = Timeline.__new__(Timeline)
        twin.__dict__.update(self.__dict__)
        twin.rng = np.random.default_rng()
        twin.rng.bit_generator.state = self.rng.bit_generator.state
        return twin
