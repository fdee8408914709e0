"""Shortest remaining job first, each task where it finishes first, and short
tasks sharing busy GPUs.

Three observations about average JCT on a pool of mixed GPUs under a stream
of DAG jobs, each one rule here:

* *Job order.* The job with the least remaining work goes first (SRPT over
  jobs), the rule that minimises mean completion time on one server.
* *Device.* Each task goes to the device where it would *finish* first, not
  to the fastest idle one: a 3,000-second task started on a slow card because
  it happened to be free holds that card (and its job) far longer than it
  would have waited for a fast one. So a task may wait for a busy device that
  would finish it clearly sooner (by ``patience``), and that device is held
  for it while the next tasks are placed.
* *Sharing.* Non-preemptive queues make a short job wait behind long tasks
  that hold every GPU. Sharing a device costs a little throughput
  (interference) but lets the short task start now, a processor-sharing
  effect that helps average JCT when job sizes are heavy-tailed, as in real
  workflows. So a task left waiting may share a busy GPU (memory allowing, at
  most ``max_share`` tasks) when it would take under ``ratio`` of the time that
  GPU's current work still needs.

* *First runs.* A kind of task that has never finished (a new script, or
  the first of a sweep) is predicted from its estimate and from what every
  kind takes, which can be wrong by a factor. Its first run tells: so while
  one runs, the same kind's tasks in other jobs wait (``probe``) behind the
  jobs that have no work of that kind, and take only devices nothing else
  wants: the second bet on an unknown kind waits for the first to be
  settled. A job that has work of that kind itself is no surer than the
  tasks held back, so they do not wait behind it (a pipeline's train does not
  wait behind the next pipeline's prepare), and a job's own tasks of that
  kind are not held back at all (its order already counts them).

Gangs (tasks of several GPUs) would starve under SRPT behind a stream of
small tasks, so the oldest ready gang that cannot start, once its job has
waited about as long as the gang is predicted to run (``gang_patience``),
holds a reservation, as in EASY backfilling
(:mod:`rlsched.schedulers.backfill`): the devices where it can start soonest
take no task, and no share, predicted to end after they are due for it; when
they are all free it starts before anything else. Its wait is so bounded by
its own runtime, plus what runs on its devices then.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain, repeat
from operator import add

from rlsched.gangs import pick_gang
from rlsched.pool import MEMORY_TOLERANCE_GIB, fits_memory
from rlsched.schedulers.backfill import Reservation, reserve
from rlsched.schedulers.base import (
    Scheduler,
    expected_runtime,
    pool_speeds,
    runtimes,
)
from rlsched.schedulers.device_columns import DeviceColumns
from rlsched.schedulers.ready_set import ReadyByJob
from rlsched.view import EVERY_KIND, ClusterView, Placement

_EPS = 1e-9
#: a patience above this makes patience x runtime exceed the runtime, rounded
_PATIENT = 1.0 + 1e-6


class ShareScheduler(Scheduler):
    """SRPT by job onto the earliest-finishing GPU, then short tasks onto busy ones.

    :param ratio: a task may share a GPU if its runtime there is below this
        fraction of the GPU's remaining busy time
    :param max_share: most tasks on one GPU
    :param gang_patience: the oldest waiting gang holds a reservation once
        its job has waited this many times the gang's predicted runtime (0:
        at once, as EASY does; holding devices costs the small tasks that
        would have used them, so a gang first waits about as long as it runs)
    :param patience: a task waits for a busy device only if it would finish
        there sooner even with its runtime there stretched by this factor
        (1.0: wait for any sooner finish; 1.1 asks for a clear gain, so that
        a noisy estimate does not leave an idle device idle)
    :param probe: while a task of a kind with no finished run is running,
        hold back that kind's tasks in other jobs behind the jobs with no work
        of that kind, until it ends (they still take devices no other task
        wants)
    """

    name = "share"
    gang_fair = True

    def __init__(self, ratio: float = 0.1, max_share: int = 3, patience: float = 1.1,
                 gang_patience: float = 1.0, probe: bool = True) -> None:
        self.ratio, self.max_share, self.patience = ratio, max_share, patience
        self.probe = probe
        self.gang_patience = gang_patience
        self._ready = ReadyByJob()
        self._columns = DeviceColumns()
        self._fastest_pool: object = None
        self._one_model_pool: object = None
        self._one_model_answer = False
        self._fastest_mark = -1  # the columns' shape mark the fastest speeds were read at
        self._fastest_speeds: list[float] = []
        #: the table and the episode's predictions (what identifies it) of the
        #: last decision, and the table's kinds with no finished run then
        self._unknown_kinds: tuple[object, object, set[str]] = (None, None, set())

    def _decide(self, view: ClusterView) -> list[Placement]:
        if not view.devices:
            return []  # (a cluster whose every node has left)
        # memory free, tasks, clock ratio and seconds until next free (0: idle
        # now; a task past its estimate still holds its device, so it counts
        # as about to end), per device, read again only where they changed
        free, count, clocks, until_free = self._columns.read(view)
        runtime = runtimes(view, clocks)
        busy_for = list(until_free)
        out: list[Placement] = []
        waiting: list[int] = []
        ready, remaining, work = self._ready, view.job_remaining, view.predicted
        ready.sync(view)
        ready.keep_beliefs(view)  # what a run's order reads: predictions

        def longest_first(t: int) -> tuple[float, int]:
            return -work[t], t

        gangs = view.table.has_gangs
        if not gangs and (not self._columns.empty or  # (a device with a task is never idle)
                          not any(c == 0 and u == 0.0 for c, u in zip(count, until_free))):
            # no device is idle: the first pass would stop at its first task,
            # and only the sharing pass can place, in the same order; its
            # jobs are sorted once the ones with no task short enough are out
            if view.table.speeds is None and self._none_short_enough(view, busy_for, clocks):
                return out  # (most such decisions, on a wide pool)
            self._share(view, [], [], list(ready.job_ids()), longest_first, out, free, count,
                        busy_for, runtime, clocks, None, [])
            return out
        # the ready tasks in runs (a job's, or those of jobs with equal remaining
        # work), read lazily in the order sorted(view.ready, key=lambda t:
        # (job_remaining[job_of[t]], -predicted[t], t)) gives: the decision
        # stops reading once no device is left, so the queue behind is never sorted
        jobs = ready.order(remaining)
        at = 0
        reservation = None
        started: set[int] = set()
        if gangs:
            reservation = self._gangs_first(view, out, free, count, until_free)
            started = {p.task for p in out}
        # kind -> the jobs running a first run of it (unknown kinds only)
        probing = self._first_runs(view, out) if self.probe else None
        deferred: list[int] = []  # tasks held back behind a first run
        riding: dict[int, tuple[int, bool]] = {}  # job -> (kinds on trial, has work of one)
        # devices idle (nothing on them, nothing planned): a device is idle
        # exactly when its count is 0 and its until_free 0.0
        idle = sum(1 for c, u in zip(count, until_free) if c == 0 and u == 0.0)
        tail: list[int] = []  # the rest of the run the loop stopped in
        while (got := jobs.run(at, longest_first)) is not None:
            run, at = got
            for i, t in enumerate(run):
                if not idle:
                    # no device is idle any more: every task left only waits (a
                    # hold changes nothing the sharing pass reads), so stop looking
                    tail = run[i:]
                    break
                if t in started:
                    continue
                if probing is not None and self._behind_first_run(view, t, probing):
                    deferred.append(t)
                    continue
                if deferred and self._rides_on_bet(view, view.table.job_of[t], probing, riding):
                    # a job with work of a kind on trial is no surer than the
                    # tasks held back: they go first, in their order
                    idle = self._release(view, deferred, idle, out, waiting, free, count,
                                         until_free, runtime, reservation, probing)
                    if not idle:
                        tail = run[i:]
                        break
                idle -= self._place(view, t, out, waiting, free, count, until_free, runtime,
                                    reservation, probing)
            else:
                continue
            break
        # the tasks held back behind a first run take what devices are left
        held: list[int] = []
        self._release(view, deferred, idle, out, held, free, count, until_free, runtime,
                      reservation, None)
        # the tasks left waiting, in order: those passed over, then the rest,
        # then those held back
        self._share(view, waiting, tail, jobs.after(at), longest_first, out, free, count, busy_for,
                    runtime, clocks, reservation, held)
        return out

    def _place(self, view: ClusterView, t: int, out: list[Placement], waiting: list[int],
               free: list[float], count: list[int], until_free: list[float],
               runtime: Callable[[int, int], float], reservation: Reservation | None,
               probing: dict[str, set[int]] | None) -> int:
        """Start ``t`` where it finishes first, or hold the busy device that
        finishes it sooner (``t`` waits); how many idle devices it took."""
        gpus = view.table.gpus[t]
        if gpus > 1:
            if not self._start_gang(view, t, out, free, count, until_free, reservation):
                return 0
            self._started_first_run(view, t, probing)
            return gpus  # every member was idle
        d = self._earliest_finish(view, t, until_free, count, free, runtime, reservation)
        if d is None:
            waiting.append(t)
            return 0
        if count[d] == 0 and until_free[d] == 0.0:
            out.append(Placement(t, d))
            free[d] -= view.table.memory[t]
            count[d] += 1
            until_free[d] = max(runtime(t, d), _EPS)
            self._started_first_run(view, t, probing)
            return 1
        # a busy device finishes it sooner: hold that device for it
        until_free[d] += runtime(t, d)
        waiting.append(t)
        return 0

    def _release(self, view: ClusterView, deferred: list[int], idle: int,
                 out: list[Placement], waiting: list[int], free: list[float], count: list[int],
                 until_free: list[float], runtime: Callable[[int, int], float],
                 reservation: Reservation | None, probing: dict[str, set[int]] | None) -> int:
        """Place the tasks held back, in order, while a device is idle (those
        left join ``waiting``), emptying ``deferred``; the idle devices left."""
        for t in deferred:
            if idle:
                idle -= self._place(view, t, out, waiting, free, count, until_free, runtime,
                                    reservation, probing)
            else:
                waiting.append(t)
        deferred.clear()
        return idle

    def _first_runs(self, view: ClusterView, out: list[Placement]) -> dict[str, set[int]] | None:
        """Each kind with no finished run that is running (or starting in
        ``out``), with the jobs it runs in; None where every kind is known
        (every kind of the table: then no task runs or starts as a first run,
        and the running tasks are not read)."""
        known = view.known_kinds
        if known is EVERY_KIND:
            return None
        table, episode, unknown = self._unknown_kinds
        if table is not view.table or episode is not view.predicted:
            unknown = set(view.table.history_key)  # (an episode keeps its predictions' list)
        # within an episode the runtime model only learns kinds: the set only shrinks
        unknown = {k for k in unknown if k not in known}
        self._unknown_kinds = (view.table, view.predicted, unknown)
        if not unknown:
            return None
        keys, job_of = view.table.history_key, view.table.job_of
        probing: dict[str, set[int]] = {}
        # (filtered in a comprehension first: most running tasks are of known kinds)
        for t in [r.task for r in view.running if keys[r.task] not in known] + [
                p.task for p in out if keys[p.task] not in known]:
            probing.setdefault(keys[t], set()).add(job_of[t])
        return probing

    @staticmethod
    def _behind_first_run(view: ClusterView, t: int, probing: dict[str, set[int]]) -> bool:
        """Whether ``t``'s kind has no finished run and is running in another job."""
        jobs = probing.get(view.table.history_key[t]) if probing else None
        return jobs is not None and (len(jobs) > 1 or view.table.job_of[t] not in jobs)

    @staticmethod
    def _rides_on_bet(view: ClusterView, job: int, probing: dict[str, set[int]] | None,
                      memo: dict[int, tuple[int, bool]]) -> bool:
        """Whether ``job`` has a task of a kind whose first run is going on
        (memoised in ``memo`` for one decision, while no kind joins those on
        trial: a first run started in this decision adds one)."""
        kinds = len(probing) if probing is not None else 0
        seen = memo.get(job)
        if seen is None or seen[0] != kinds:
            keys = view.table.history_key
            seen = memo[job] = kinds, probing is not None and any(
                keys[t] in probing for t in view.table.tasks_of(job))
        return seen[1]

    @staticmethod
    def _started_first_run(view: ClusterView, t: int, probing: dict[str, set[int]] | None
                           ) -> None:
        if probing is not None:
            k = view.table.history_key[t]
            if k not in view.known_kinds:
                probing.setdefault(k, set()).add(view.table.job_of[t])

    def _none_short_enough(self, view: ClusterView, busy_for: list[float],
                           clocks: list[float]) -> bool:
        """Whether no ready task could share a device: every job's shortest
        ready task, even on the fastest device, is over the bound the sharing
        pass prunes by, here over every device's busy time rather than the
        open ones' (so never tighter). The pass would place nothing; this
        says so without building it."""
        least = self._ready.least(view.predicted)
        if not least:
            return True
        bound = self._ceiling(_most(busy_for)) * max(self._fastest(view, clocks))
        return min(least.values()) > bound

    def _ceiling(self, longest: float) -> float:
        """The longest runtime that may share a device busy for at most
        ``longest`` seconds: ``ratio`` of it, with a margin so that rounding
        never prunes a task the device scan would take."""
        return self.ratio * longest * (1.0 + 1e-9)

    def _share(self, view: ClusterView, waiting: list[int], tail: list[int], jobs: list[int],
               run_order: Callable[[int], tuple[float, int]], out: list[Placement],
               free: list[float], count: list[int], busy_for: list[float],
               runtime_of: Callable[[int, int], float], clocks: list[float],
               reservation: Reservation | None, held: list[int]) -> None:
        """The sharing pass: tasks left waiting onto busy devices, where short
        enough: those the first pass passed over (``waiting``), the rest of
        the run it stopped in (``tail``), then the runs of ``jobs`` it did not
        reach, each run sorted by ``run_order``, then those ``held`` back
        behind a first run."""
        if not (waiting or tail or jobs or held):
            return  # every ready task was placed: nothing is left to share
        memory = view.table.memory
        max_share = self.max_share
        # a task shares only if its runtime on some device open to one more
        # task is under ratio x that device's busy time: one that takes longer
        # even on the fastest device at the longest such busy time is skipped
        # without a scan (with a margin, so rounding never skips one the scan
        # would take); devices only close as the pass goes, so the ceiling holds
        open_devices, longest = _open_devices(count, busy_for, max_share)
        if not open_devices:
            return  # no busy device takes one more task: nothing can share
        ceiling = self._ceiling(longest)
        fastest = self._fastest(view, clocks)
        predicted, kind, gpus = view.predicted, view.table.kind, view.table.gpus
        pruned = view.table.speeds is None  # (with measured per-task speeds, every task is scanned)
        stairs: OpenDevices | None = None  # (on a wide pool) built when first asked
        # a run is sorted longest first: the tasks short enough anywhere are its tail
        for t in chain(waiting, tail, self._short_enough(view, jobs, run_order,
                                                          ceiling * max(fastest), pruned), held):
            if not open_devices:
                break  # no busy device takes one more task: nothing can share
            if gpus[t] > 1:
                continue  # a gang takes idle devices only
            if pruned:
                floor = predicted[t] / fastest[kind[t]]  # its runtime on the fastest device
                if floor > ceiling:
                    continue
                if len(open_devices) >= WIDE_SCAN:
                    if stairs is None:
                        stairs = OpenDevices(open_devices, busy_for, free, self.ratio)
                    if stairs.none_takes(floor, memory[t]):
                        continue  # the scan below would find no device
            d = self._shares_best(view, t, open_devices, free, busy_for, runtime_of, reservation)
            if d is not None:
                out.append(Placement(t, d))
                free[d] -= memory[t]
                count[d] += 1
                if count[d] == max_share:
                    open_devices.remove(d)
                stairs = None  # its memory, and maybe its being open, changed

    def _shares_best(self, view: ClusterView, t: int, open_devices: list[int],
                     free: list[float], busy_for: list[float],
                     runtime_of: Callable[[int, int], float],
                     reservation: Reservation | None) -> int | None:
        """The open device where ``t`` would run shortest, among those with
        the memory for it where it takes under ``ratio`` of their busy time
        (the first in index order of equals); None if none."""
        memory, ruled = view.table.memory[t], view.constrained
        best = None
        for d in open_devices:  # in index order, as a scan of every device
            if not fits_memory(memory, free[d]) or (ruled and not view.may_use(t, d)):
                continue
            if reservation is not None and not reservation.allows(view, t, d):
                continue
            runtime = runtime_of(t, d)
            if runtime < self.ratio * busy_for[d] and (best is None or runtime < best[0]):
                best = (runtime, d)
        return None if best is None else best[1]

    def _fastest(self, view: ClusterView, clocks: list[float]) -> list[float]:
        """The fastest device's compute and memory speed, clocks included
        (``clocks``: this decision's, as the columns read them): kept while
        the pool and its clocks stay the same."""
        mark = self._columns.shape_mark
        if view.pool is not self._fastest_pool or mark != self._fastest_mark:
            models = [d.model for d in view.pool.devices]
            self._fastest_pool, self._fastest_mark = view.pool, mark
            self._fastest_speeds = [max([c * m.compute_speed for c, m in zip(clocks, models)]),
                                    max([c * m.memory_speed for c, m in zip(clocks, models)])]
        return self._fastest_speeds

    def _short_enough(self, view: ClusterView, jobs: list[int],
                      run_order: Callable[[int], tuple[float, int]], bound: float,
                      pruned: bool) -> Iterator[int]:
        """The ready tasks of ``jobs``' runs, in order of their jobs'
        remaining work (``jobs`` in the ready set's order where ties are
        left), leaving out (where ``pruned``) those predicted above ``bound``
        reference-seconds, which no device would take: a job whose shortest
        ready task is longer is left out whole (its tasks would only be
        dropped from a run it shared with a job of equal remaining work), and
        a run, sorted longest first, is cut to its tail by bisection. The
        jobs are sorted after that cut (a stable sort: the order the cut
        leaves of a sorted list), so a decision that places nothing sorts none."""
        ready, remaining, work = self._ready, view.job_remaining, view.predicted

        def minus_work(t: int) -> float:
            return -work[t]

        if pruned:
            least = ready.least(work)
            jobs = [j for j in jobs if least[j] <= bound]
        jobs.sort(key=remaining.__getitem__)
        at, n = 0, len(jobs)
        while at < n:
            run, at = ready.run(jobs, at, remaining, run_order)
            yield from run[bisect_left(run, -bound, key=minus_work):] if pruned else run

    def _gangs_first(self, view: ClusterView, out: list[Placement], free: list[float],
                     count: list[int], until_free: list[float]) -> Reservation | None:
        """Start the oldest ready gang if it can start now, else reserve for it."""
        gpus = view.table.gpus
        oldest = next((t for t in view.ready if gpus[t] > 1), None)
        if oldest is None:
            return None
        if self._start_gang(view, oldest, out, free, count, until_free, None):
            return None
        waited = view.time - view.table.jobs[view.table.job_of[oldest]].arrival
        if waited < self.gang_patience * view.predicted[oldest]:
            return None
        return reserve(view, oldest, until_free)

    def _start_gang(self, view: ClusterView, t: int, out: list[Placement], free: list[float],
                    count: list[int], until_free: list[float],
                    reservation: Reservation | None) -> bool:
        """Start gang ``t`` on idle devices, where enough of them take it."""
        need = view.table.memory[t]
        idle = [d for d in range(len(free)) if count[d] == 0 and until_free[d] == 0.0
                and fits_memory(need, free[d]) and view.may_use(t, d)
                and (reservation is None or reservation.task == t
                     or reservation.allows(view, t, d))]
        gang = pick_gang(view.pool, view.table.gpus[t], idle,
                         partial(expected_runtime, view, t))
        if gang is None:
            return False
        out.append(Placement(t, gang[0], gang[1:]))
        runtime = max(expected_runtime(view, t, d) for d in gang)
        for d in gang:
            free[d] -= need
            count[d] += 1
            until_free[d] = max(runtime, _EPS)
        return True

    def _earliest_finish(self, view: ClusterView, task: int, until_free: list[float],
                         count: list[int], free: list[float],
                         runtime_of: Callable[[int, int], float],
                         reservation: Reservation | None = None) -> int | None:
        """The device where ``task`` would finish first: an idle one it fits
        now, or a busy one it fits when empty, if clearly sooner there."""
        need = view.table.memory[task]
        ruled = view.constrained
        if not ruled and reservation is None and view.table.speeds is None:
            return self._earliest_finish_plain(view, task, until_free, count, free)
        best, best_finish = None, 0.0
        for dev in view.devices:
            d = dev.index
            if not dev.healthy or not fits_memory(need, dev.memory_total) or (
                    ruled and not view.may_use(task, d)):
                continue
            if reservation is not None and not reservation.allows(view, task, d):
                continue
            runtime = runtime_of(task, d)
            if until_free[d] == 0.0 and count[d] == 0:
                if not fits_memory(need, free[d]):
                    continue
                finish = runtime
            else:
                finish = until_free[d] + self.patience * runtime
            if best is None or finish < best_finish:
                best, best_finish = d, finish
        return best

    def _earliest_finish_plain(self, view: ClusterView, task: int, until_free: list[float],
                               count: list[int], free: list[float]) -> int | None:
        """:meth:`_earliest_finish` where no placement rule, reservation or
        per-task speed applies (most decisions): the same comparisons on the
        same floats, with the runtime and the memory test inline, as this
        scans every device for every task placed."""
        need = view.table.memory[task]
        seconds, kind = view.predicted[task], view.table.kind[task]
        speeds, patience, tolerance = pool_speeds(view.pool), self.patience, MEMORY_TOLERANCE_GIB
        clocks = self._columns.clocks  # this decision's, as runtimes() reads them
        if patience > _PATIENT and self._one_model(view) and self._columns.all_alike() \
                and math.isfinite(seconds):
            return self._earliest_finish_alike(view, need, seconds / speeds[0][kind] / clocks[0],
                                               until_free, count, free)
        best, best_finish = None, 0.0
        for dev in view.devices:
            if not dev.healthy or not need <= dev.memory_total + tolerance:
                continue
            d = dev.index
            runtime = seconds / speeds[d][kind] / clocks[d]
            if until_free[d] == 0.0 and count[d] == 0:
                if not need <= free[d] + tolerance:
                    continue
                finish = runtime
            else:
                finish = until_free[d] + patience * runtime
            if best is None or finish < best_finish:
                best, best_finish = d, finish
        return best

    def _one_model(self, view: ClusterView) -> bool:
        """Whether every device of the pool has one (compute, memory) speed:
        kept while the pool is the same."""
        if view.pool is not self._one_model_pool:
            speeds = pool_speeds(view.pool)
            self._one_model_pool = view.pool
            self._one_model_answer = speeds.count(speeds[0]) == len(speeds)
        return self._one_model_answer

    def _earliest_finish_alike(self, view: ClusterView, need: float, runtime: float,
                               until_free: list[float], count: list[int], free: list[float]
                               ) -> int | None:
        """:meth:`_earliest_finish_plain` on a pool of alike devices (one
        speed, one clock, all healthy), where ``task`` runs ``runtime`` on
        each. An idle device with room finishes it in ``runtime``, and a busy
        one (busy for more than 0 s) only after its busy time plus
        ``patience`` (over :data:`_PATIENT`, so patience times a runtime is
        over it, even rounded) times that: so the scan picks the first idle
        device with room, and with none, the least busy time plus patience
        times the runtime, first on ties. The same answer, found by C-level
        passes (``list.index``, ``map``, ``min``) instead of a scan per device."""
        tolerance = MEMORY_TOLERANCE_GIB
        if not need <= view.devices[0].memory_total + tolerance:
            return None  # the scan skips every device
        passed: list[int] = []  # idle devices without room: the scan passes them by
        d = -1
        while True:
            try:
                d = count.index(0, d + 1)
            except ValueError:
                break
            if until_free[d] == 0.0:
                if need <= free[d] + tolerance:
                    return d
                passed.append(d)
        finish = list(map(add, until_free, repeat(self.patience * runtime)))
        for d in passed:
            finish[d] = math.inf
        best = min(finish)
        return None if best == math.inf else finish.index(best)



def _open_devices(count: list[int], busy_for: list[float], max_share: int
                  ) -> tuple[list[int], float]:
    """The devices busy but open to one more task, in index order, and the
    longest busy time among them (0 where none is; busy times are never below 0)."""
    open_devices: list[int] = []
    longest = 0.0
    for d in range(len(count)):
        if 0 < count[d] < max_share:
            open_devices.append(d)
            if busy_for[d] > longest:
                longest = busy_for[d]
    return open_devices, longest


def _most(values: list[float]) -> float:
    """``max(values)`` of a list of busy times (not empty, none NaN), in one
    pass a compiler types."""
    most = values[0]
    for v in values:
        if v > most:
            most = v
    return most


#: from this many devices open to one more task, the sharing pass asks
#: :class:`OpenDevices` before it scans them for a task
WIDE_SCAN = 32


class OpenDevices:
    """The devices open to one more task in a sharing pass, by how long a
    task they take (``ratio`` of their busy time, longest first), with the
    most memory free among each prefix: whether *any* of them could take a
    task is then a bisection, where the pass's scan reads every one.

    On 512 GPUs with 64,000 tasks queued, nine tenths of ``share``'s time
    went to scans that found no device (a task short enough for the busiest
    device, with no memory left there). A task is passed over here only if
    no device has both the memory for it and a busy time over its runtime
    on the fastest device divided by ``ratio`` (less a margin for rounding):
    a device the scan would take has both, so the schedule is the same.
    Build one for the pass's state and drop it once a task is placed (free
    memory and the open set change); busy times do not change in a pass."""

    __slots__ = ("_longest", "_most_free")

    def __init__(self, devices: list[int], busy_for: list[float], free: list[float],
                 ratio: float) -> None:
        order = sorted(devices, key=busy_for.__getitem__, reverse=True)
        #: minus the longest task each takes, ascending (a bisection's order)
        self._longest = [-(ratio * busy_for[d]) for d in order]
        most, self._most_free = -math.inf, []
        for d in order:
            most = free[d] if free[d] > most else most
            self._most_free.append(most)

    def none_takes(self, floor: float, memory: float) -> bool:
        """Whether no device would take a task of ``memory`` GiB that runs at
        least ``floor`` seconds on every device."""
        # the scan takes d where runtime < ratio x busy_for[d]; runtime >= floor,
        # up to rounding, so only devices with ratio x busy_for[d] > floor could
        k = bisect_left(self._longest, -floor * (1.0 - 1e-9))
        return k == 0 or not fits_memory(memory, self._most_free[k - 1])
