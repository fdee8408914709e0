"""The idle devices of a pool, grouped into classes, kept between decisions.

A greedy scheduler (fifo, sjf, cp, las) places ready tasks on idle devices,
and sees devices of one model with the same free memory, size and clock as
interchangeable (:func:`rlsched.schedulers.base.device_classes`). Grouping
every idle device afresh at each decision cost a pass over the pool: on 512
GPUs, three quarters of fifo's decision, which mostly places one or two
tasks. Between two decisions few devices change, and the simulator says
which: it keeps a device's telemetry sample (the very object) until
something on that device changes (see
:attr:`rlsched.view.ClusterView.devices`). So the groups are kept, and only
the devices with a new sample move between them. A view with fresh samples
for every device (the live daemon's) regroups them all, to the same groups.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from itertools import compress
from operator import is_not

from rlsched.view import ClusterView, DeviceTelemetry

#: from this many devices up the classes are kept (below it, grouping the few
#: idle devices afresh costs less than keeping them)
WIDE_POOL = 32


class IdleClasses:
    """Healthy devices running nothing, by class, each class in index order."""

    __slots__ = ("_devices", "_pool", "_key", "_groups", "_n_idle")

    def __init__(self) -> None:
        self._devices: tuple[DeviceTelemetry, ...] | None = None
        self._pool: object = None  # the models are the pool's: another pool, another grouping
        self._key: list[tuple | None] = []  # each device's class while it is idle
        self._groups: dict[tuple, list[int]] = {}
        self._n_idle = 0

    def read(self, view: ClusterView, models: Sequence[tuple]) -> tuple[int, dict[tuple, list[int]]]:
        """How many devices are idle, and their classes as
        :func:`~rlsched.schedulers.base.device_classes` of every idle device
        gives them (no empty class), each device's model read as ``models``
        has it. The lists are this object's: read them, do not change them."""
        devices = view.devices
        old = self._devices
        if old is None or len(old) != len(devices) or view.pool is not self._pool:
            changed: list[int] | range = range(len(devices))
            self._key, self._groups, self._n_idle = [None] * len(devices), {}, 0
            self._pool = view.pool
        else:
            changed = list(compress(range(len(devices)), map(is_not, devices, old)))
        self._devices = devices
        if changed:
            self._regroup(view, models, changed)
        return self._n_idle, self._groups

    def key_of(self, d: int) -> tuple:
        """The class of idle device ``d`` at the last :meth:`read`."""
        key = self._key[d]
        assert key is not None, f"device {d} was not idle"
        return key

    def _regroup(self, view: ClusterView, models: Sequence[tuple],
                 changed: list[int] | range) -> None:
        keys, groups, devices = self._key, self._groups, view.devices
        for d in changed:
            key = keys[d]
            if key is not None:
                members = groups[key]
                members.remove(d)
                if not members:
                    del groups[key]
                self._n_idle -= 1
            dev = devices[d]
            if dev.healthy and dev.n_tasks == 0:
                # class_key's fields, inline (clock_ratio's expression)
                key = (models[d], dev.memory_total - dev.memory_used, dev.memory_total,
                       dev.sm_clock_mhz / dev.max_sm_clock_mhz if dev.max_sm_clock_mhz else 0.0)
                group = groups.get(key)
                if group is None:
                    groups[key] = [d]
                else:
                    insort(group, d)
                self._n_idle += 1
                keys[d] = key
            else:
                keys[d] = None
