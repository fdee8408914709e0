"""The one interface every policy implements, heuristic or learned.

In the terms of the Kubernetes scheduling framework: the view's feasibility
check (:meth:`ClusterView.fits`) is the *filter*, a scheduler only *scores*
and picks, and the simulator or runtime *binds*. Returning no placements is a
normal answer ("wait until something changes"), not an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from functools import partial

from rlsched.gangs import pick_gang
from rlsched.pool import Pool, fits_memory
from rlsched.schedulers.idle_classes import WIDE_POOL, IdleClasses
from rlsched.view import ClusterView, Placement


class Scheduler(ABC):
    """A policy: given a view, which ready tasks start on which devices.

    :meth:`decide` may return several placements at once; they are applied in
    order, so a later one must still fit after the earlier ones. Subclasses
    implement :meth:`_decide`; :meth:`reset` is called before each episode.
    """

    #: the name used in ``--scheduler`` lists and result tables
    name: str = "scheduler"
    #: True for ``oracle:NAME``: a bound that must be run with exact estimates
    oracle: bool = False
    #: whether it only ever starts tasks on idle devices and keeps no state
    #: between decisions: then the simulator skips the decision points where
    #: it could only wait (:class:`rlsched.sim.Simulator`'s ``idle_only``)
    idle_only: bool = False
    #: whether a gang (a task of several GPUs) waiting behind a stream of
    #: 1-GPU tasks is sure to start (tested for every scheduler that says so)
    gang_fair: bool = False
    #: whether a decision costs far more than a greedy rule's (a plan, a
    #: search, a network): ``evaluate --workers`` starts its episodes first,
    #: so the longest ones do not start last and leave the other workers idle
    costly: bool = False
    #: whether its decisions read the runtime model's beliefs (predictions,
    #: their spread, jobs' remaining work, known kinds) where no task is a
    #: gang. Where not, the simulator need not keep them current
    #: (:class:`rlsched.sim.Simulator`'s ``learns``): no schedule changes,
    #: and the model's learning is no longer part of the episode's cost.
    #: Stricter than :data:`rlsched.schedulers.RUNTIME_BLIND` (no oracle):
    #: ``las`` is there, yet picks a device by expected runtime, whose
    #: rounding ties a stale prediction could break otherwise
    reads_beliefs: bool = True
    #: the idle devices' classes of a scheduler that keeps them between
    #: decisions (:func:`kept_idle_classes`)
    _idle_classes: IdleClasses | None = None

    def reset(self, seed: int = 0) -> None:
        """Forget the last episode; ``seed`` seeds any randomness of the policy."""

    def decide(self, view: ClusterView) -> list[Placement]:
        if not view.ready:
            return []
        return self._decide(view)

    @abstractmethod
    def _decide(self, view: ClusterView) -> list[Placement]:
        """Placements for ``view`` (which has at least one ready task)."""


class GreedyIdleScheduler(Scheduler):
    """Order the ready tasks, then give each, in turn, an idle device.

    This is how the classic list heuristics and today's GPU spoolers work:
    one task per GPU, the ready queue sorted by some priority, each task sent
    to the best idle device that has its memory. Subclasses say the order
    (:meth:`order`) and which idle device is best (:meth:`choose`).

    A gang (``gpus: N``) takes N idle devices by :func:`rlsched.gangs.pick_gang`.
    One that cannot start yet *holds* the idle devices that could take it:
    the tasks after it in the order may not use them, so devices gather for
    it and it starts once enough are free, behind any stream of 1-GPU tasks
    that come later in the order. Meanwhile those devices stand idle: the
    head-of-line blocking of a strict queue, which ``backfill`` remedies.
    """

    idle_only = True

    def _decide(self, view: ClusterView) -> list[Placement]:
        wide = kept_idle_classes(self, view)
        if wide is None:
            return self._decide_each(view)
        kept, n_idle, classes = wide
        if not n_idle:
            return []
        # a 1-GPU task chooses among each class's first member (in index
        # order), which is what choose() would pick of every idle device (its
        # ties go to the lowest index); taken[k]: how many of class k are taken
        devices, memory = view.devices, view.table.memory
        taken = dict.fromkeys(classes, 0)
        firsts = sorted(m[0] for m in classes.values())
        out: list[Placement] = []
        for t in self.order(view):
            need = memory[t]
            fitting = [d for d in firsts
                       if fits_memory(need, devices[d].memory_total - devices[d].memory_used)]
            if not fitting:
                continue
            d = self.choose(view, t, fitting)
            out.append(Placement(t, d))
            n_idle -= 1
            if not n_idle:
                break
            taken[kept.key_of(d)] += 1
            firsts = sorted(m[n] for m, n in zip(classes.values(), taken.values()) if n < len(m))
        return out

    def _decide_each(self, view: ClusterView) -> list[Placement]:
        """:meth:`_decide` where placement rules or gangs make devices differ
        task by task, or on a narrow pool: the idle devices are read afresh."""
        idle = [d.index for d in view.devices if d.healthy and d.n_tasks == 0]
        if not idle:
            return []
        devices = view.devices  # memory_free, inline: a property call per device adds up
        free = {d: devices[d].memory_total - devices[d].memory_used for d in idle}
        memory = view.table.memory
        ruled = view.constrained
        gpus = view.table.gpus if view.table.has_gangs else None
        # idle devices of one model, free memory, size and clock are alike to
        # every task: a 1-GPU task chooses among each class's first member (in
        # index order), which is what choose() would pick of the whole class
        # (its ties go to the lowest index); placement rules name devices, so
        # with any, every device is offered (as it is when only one is idle)
        classes = None if ruled or len(idle) == 1 else device_classes(view, idle, free)
        firsts = sorted(m[0] for m in classes.values()) if classes is not None else idle
        out: list[Placement] = []
        for t in self.order(view):
            if gpus is not None and gpus[t] > 1:
                fitting = [d for d in idle if fits_memory(memory[t], free[d])
                           and (not ruled or view.may_use(t, d))]
                gang = pick_gang(view.pool, gpus[t], fitting,
                                 partial(expected_runtime, view, t))
                # a gang that cannot start holds what could take it, so that devices gather
                taken = fitting if gang is None else gang
                if gang is not None:
                    out.append(Placement(t, gang[0], gang[1:]))
                idle = [d for d in idle if d not in taken]
                if classes is not None:
                    classes = device_classes(view, idle, free)
                    firsts = sorted(m[0] for m in classes.values())
                else:
                    firsts = idle
                if not idle:
                    break
                continue
            fitting = [d for d in firsts if fits_memory(memory[t], free[d])
                       and (not ruled or view.may_use(t, d))]
            if not fitting:
                continue
            d = self.choose(view, t, fitting)
            out.append(Placement(t, d))
            idle.remove(d)
            if not idle:
                break
            if classes is not None:
                members = classes[class_key(view, d, free[d])]
                members.remove(d)  # its first: the next member, if any, takes its place
                firsts = sorted(m[0] for m in classes.values() if m)
            else:
                firsts = idle
        return out

    def order(self, view: ClusterView) -> Iterable[int]:
        """Ready tasks, most urgent first (default: oldest first); read
        only as far as the idle devices go."""
        return view.ready

    def choose(self, view: ClusterView, task: int, devices: list[int]) -> int:
        """The device for ``task`` among idle ``devices`` that fit (default:
        the fastest for it, now, as telemetry shows; ties to the lowest index)."""
        return min(devices, key=lambda d: expected_runtime(view, task, d))


def kept_idle_classes(scheduler: Scheduler, view: ClusterView
                      ) -> tuple[IdleClasses, int, dict[tuple, list[int]]] | None:
    """On a pool of :data:`WIDE_POOL` devices or more, with no placement
    rule and no gang: the idle devices' classes ``scheduler`` keeps between
    decisions (:class:`IdleClasses`, made at its first), how many devices
    are idle, and the classes. None elsewhere: read the devices afresh."""
    if view.constrained or view.table.has_gangs or len(view.devices) < WIDE_POOL:
        return None
    kept = scheduler._idle_classes
    if kept is None:
        kept = scheduler._idle_classes = IdleClasses()
    n_idle, classes = kept.read(view, pool_models(view.pool))
    return kept, n_idle, classes


def class_key(view: ClusterView, d: int, free: float) -> tuple:
    """The group of :func:`device_classes` that device ``d`` with ``free`` GiB is in."""
    dev = view.devices[d]
    return _pool_columns(view.pool)[0][d], free, dev.memory_total, dev.clock_ratio


def device_classes(view: ClusterView, idle: Iterable[int],
                   free: Mapping[int, float]) -> dict[tuple, list[int]]:
    """Devices grouped by what a scheduler scores them on (model, free memory,
    size, clock), each group in the order given: devices of one group are
    interchangeable to a heuristic that reads only those (and no placement
    rules, which name devices), as GPUs of one model in one state are."""
    out: dict[tuple, list[int]] = {}
    models, devices = _pool_columns(view.pool)[0], view.devices
    for d in idle:
        dev = devices[d]  # class_key, inline (clock_ratio's expression): called per idle device
        key = (models[d], free[d], dev.memory_total,
               dev.sm_clock_mhz / dev.max_sm_clock_mhz if dev.max_sm_clock_mhz else 0.0)
        group = out.get(key)
        if group is None:
            out[key] = [d]
        else:
            group.append(d)
    return out


def expected_runtime(view: ClusterView, task: int, device: int) -> float:
    """Seconds ``task`` should take alone on ``device``: nominal speed scaled by
    the clock ratio telemetry reports (a throttled device is slower)."""
    ratio = view.devices[device].clock_ratio or 1.0
    return view.nominal_runtime(task, device) / ratio


#: each pool's devices, as model keys and (compute, memory) speeds, by the pool's identity
_POOLS: dict[int, tuple[Pool, list[tuple[str, float, float]], list[tuple[float, float]]]] = {}


def _pool_columns(pool: Pool) -> tuple[list[tuple[str, float, float]], list[tuple[float, float]]]:
    """Each device's model as a key that hashes fast (name and speeds), and
    its (compute, memory) speeds: computed once per pool."""
    hit = _POOLS.get(id(pool))
    if hit is None or hit[0] is not pool:
        if len(_POOLS) > 16:
            _POOLS.clear()
        models = [(d.model.name, d.model.compute_speed, d.model.memory_speed)
                  for d in pool.devices]
        hit = _POOLS[id(pool)] = (pool, models, [(c, m) for _, c, m in models])
    return hit[1], hit[2]


def pool_models(pool: Pool) -> list[tuple[str, float, float]]:
    """Each device's model as a key that hashes fast (its name and speeds):
    computed once per pool."""
    return _pool_columns(pool)[0]


def pool_speeds(pool: Pool) -> list[tuple[float, float]]:
    """Each device's nominal (compute, memory) speed, indexed by a task's
    kind (0 compute, 1 memory): computed once per pool."""
    return _pool_columns(pool)[1]


def clock_ratios(view: ClusterView) -> list[float]:
    """Each device's clock ratio as :func:`expected_runtime` reads it (1 where unknown)."""
    # clock_ratio, inline: a property call per device adds up on a wide pool
    return [(dev.sm_clock_mhz / dev.max_sm_clock_mhz if dev.max_sm_clock_mhz else 0.0) or 1.0
            for dev in view.devices]


def runtimes(view: ClusterView, clocks: list[float] | None = None) -> Callable[[int, int], float]:
    """:func:`expected_runtime` for this view, as ``runtime(task, device)``,
    with what it reads per device looked up once (``clocks``: the view's
    :func:`clock_ratios`, where the caller has them): the same numbers,
    from the same operations, for a scheduler that asks for many."""
    if view.table.speeds is not None:  # each task's own measured speeds
        return partial(expected_runtime, view)
    speeds = _pool_columns(view.pool)[1]
    if clocks is None:
        clocks = clock_ratios(view)
    predicted, kind = view.predicted, view.table.kind

    def runtime(task: int, device: int) -> float:
        return predicted[task] / speeds[device][kind[task]] / clocks[device]

    return runtime
