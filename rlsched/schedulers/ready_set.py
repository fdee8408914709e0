"""The ready set grouped by job, kept up to date between decisions.

Schedulers that order the queue job by job (``share``, ``sjf``) would
otherwise sort every ready task at every decision, a cost that grows with
the queue. :class:`ReadyByJob` replays the view's ready log
(:class:`rlsched.view.ReadyCursor`) instead, so a decision sorts only the
jobs, and within a job only the tasks it reaches. Where the producer keeps
no log (the live daemon builds each view afresh), it is rebuilt from
``view.ready`` each time, with the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, KeysView, Mapping, Sequence
from typing import Any

from rlsched.view import ClusterView, ReadyCursor

#: a key per job, read as ``job_key[job]``: a column, or a dict over the jobs with ready tasks
JobKey = Sequence[Any] | Mapping[int, Any]


class ReadyByJob:
    """Ready tasks per job, each with its place in the ready order (the order
    in which they became ready, as :attr:`ClusterView.ready` lists them).
    It keeps the sorted runs of one order: a scheduler keeps one per order."""

    def __init__(self) -> None:
        self._cursor = ReadyCursor()
        self._of: dict[int, dict[int, int]] = {}
        self._seq = 0
        self._token: object = None
        self._sorted: dict[int, list[int]] = {}  # job -> its ready tasks, sorted
        self._least: dict[int, float] = {}  # job -> the least value of its ready tasks
        self._stale: set[int] = set()  # jobs whose ready tasks changed since least()
        #: history key -> {job: how many of its ready tasks have that key}, kept
        #: once :meth:`keep_beliefs` is first asked (None until then)
        self._by_key: dict[str, dict[int, int]] | None = None
        self._beliefs: tuple[list[str] | None, int] = (None, 0)  # log and mark seen
        #: the jobs whose ready tasks the last :meth:`sync` changed (None: it
        #: rebuilt every group, as on a view without a log)
        self.touched: set[int] | None = None

    def sync(self, view: ClusterView) -> None:
        """Bring the groups up to ``view``."""
        job_of = view.table.job_of
        changes = self._cursor.changes(view)
        if changes is None:
            of: dict[int, dict[int, int]] = {}
            self._of, self._sorted, self._least = of, {}, {}
            for i, t in enumerate(view.ready):
                group = of.get(job_of[t])
                if group is None:
                    of[job_of[t]] = {t: i}
                else:
                    group[t] = i
            self._seq = len(view.ready)
            self.touched = None
            if self._by_key is not None:
                self._by_key = {}
                self._count_keys(view, view.ready, 1)
            return
        of, cache, least = self._of, self._sorted, self._least
        self.touched = touched = set()
        for e in changes:
            t = e if e >= 0 else ~e
            j = job_of[t]
            touched.add(j)
            cache.pop(j, None)
            least.pop(j, None)
            self._stale.add(j)
            if e >= 0:
                group = of.get(j)
                if group is None:
                    of[j] = {t: self._seq}
                else:
                    group[t] = self._seq
                self._seq += 1
            else:
                group = of[j]
                del group[t]
                if not group:
                    del of[j]
        if self._by_key is not None:
            for e in changes:
                self._count_keys(view, (e,) if e >= 0 else (~e,), 1 if e >= 0 else -1)

    def _count_keys(self, view: ClusterView, tasks: Iterable[int], step: int) -> None:
        """Count ``tasks`` in (``step`` 1) or out (-1) of their keys' jobs."""
        by_key, keys, job_of = self._by_key, view.table.history_key, view.table.job_of
        assert by_key is not None
        for t in tasks:
            jobs = by_key.setdefault(keys[t], {})
            j = job_of[t]
            n = jobs.get(j, 0) + step
            if n:
                jobs[j] = n
            else:
                del jobs[j]

    def job_ids(self) -> KeysView[int]:
        """The jobs with a ready task."""
        return self._of.keys()

    def keep(self, token: object) -> None:
        """Drop what was derived from the tasks' keys when ``token`` (whatever
        those keys read, such as the view's ``open_knowledge``) has changed."""
        if token != self._token:
            self._token, self._sorted, self._least = token, {}, {}

    def keep_beliefs(self, view: ClusterView) -> None:
        """:meth:`keep` for keys that read the predictions of open tasks
        (token ``view.open_knowledge``), dropping only what was derived for
        the jobs with a ready task of a history key the view's belief log
        says was re-predicted since the last call: on a long queue a belief
        moves some jobs' ready tasks, not every job's. A view without a log
        (or of another episode) drops everything, as :meth:`keep` does.
        Call it after :meth:`sync`."""
        if self._by_key is None:  # first asked: count the ready tasks by key
            self._by_key = {}
            self._count_keys(view, [t for group in self._of.values() for t in group], 1)
        token, (log, mark) = view.open_knowledge, self._beliefs
        self._beliefs = (view.belief_log, view.belief_mark)
        if token == self._token:
            return
        self._token = token
        if log is None or log is not view.belief_log or view.belief_mark < mark:
            self._sorted, self._least = {}, {}
            return
        cache, least, stale, by_key = self._sorted, self._least, self._stale, self._by_key
        for key in set(log[mark:view.belief_mark]):
            for j in by_key.get(key, ()):
                cache.pop(j, None)
                least.pop(j, None)
                stale.add(j)

    def order(self, job_key: tuple[float, ...]) -> JobOrder:
        """The jobs with a ready task by ``job_key``, as :meth:`jobs` sorts
        them, sorted only as far as they are read (:class:`JobOrder`)."""
        return JobOrder(self, job_key)

    def jobs(self, job_key: JobKey) -> list[int]:
        """The jobs with a ready task, by ``job_key`` (ties in no set order:
        :meth:`run` merges them)."""
        return sorted(self._of, key=job_key.__getitem__)

    def run(self, jobs: list[int], i: int, job_key: JobKey,
            task_key: Callable[[int], Any] | None) -> tuple[list[int], int]:
        """The run that starts at ``jobs[i]`` and where the next one starts:
        the ready tasks of ``jobs[i]`` and of the jobs after it with an equal
        key, sorted by ``task_key`` (None: the ready order). A one-job run is
        kept until the job's ready tasks change or :meth:`keep` drops it: read
        it, never change it."""
        j, n = jobs[i], len(jobs)
        key = job_key[j]
        k = i + 1
        while k < n and job_key[jobs[k]] == key:
            k += 1
        of = self._of
        if k == i + 1:
            return self.tasks(j, task_key), k
        merged = {t: s for g in jobs[i:k] for t, s in of[g].items()}
        tasks = list(merged)
        tasks.sort(key=merged.__getitem__ if task_key is None else task_key)
        return tasks, k

    def tasks(self, j: int, task_key: Callable[[int], Any] | None) -> list[int]:
        """The ready tasks of job ``j`` sorted by ``task_key`` (None: the
        ready order), kept as :meth:`run` keeps runs: read it, never change it."""
        tasks = self._sorted.get(j)
        if tasks is None:
            tasks = list(self._of[j])  # a dict keeps the ready order
            if task_key is not None:
                tasks.sort(key=task_key)
            self._sorted[j] = tasks
        return tasks

    def least(self, value: Sequence[float]) -> dict[int, float]:
        """The least ``value`` among each job's ready tasks, ``{job: least}``,
        kept as :meth:`run` keeps runs: read it, never change it."""
        least, of = self._least, self._of
        if len(least) != len(of):  # recompute only the jobs changed since
            stale = self._stale if least else of.keys()
            for j in stale:
                group = of.get(j)
                if group is not None:
                    least[j] = min(map(value.__getitem__, group))
        self._stale = set()
        return least

    def groups(self, job_key: JobKey, task_key: Callable[[int], Any] | None = None,
               token: object = None) -> Iterator[list[int]]:
        """The ready tasks, lazily, as runs (:meth:`run`) in the order
        ``sorted(view.ready, key=lambda t: (job_key[job_of[t]], task_key(t)))``
        gives (``task_key`` None: the ready order, as a stable sort leaves
        ties). Only the jobs reached are sorted within."""
        self.keep(token)
        jobs = self.jobs(job_key)
        i, n = 0, len(jobs)
        while i < n:
            tasks, i = self.run(jobs, i, job_key, task_key)
            yield tasks


class JobOrder:
    """The jobs with a ready task sorted by a float key per job, sorted only
    as far as they are read: the jobs of the least key first (found in one
    pass), the others once a reader goes past those.

    A decision on a busy pool mostly places one task, from the first run;
    sorting every job with a ready task for it (some 57,000 instructions
    with 80 jobs) was an eighth of ``share``'s episode at 16,000 tasks on 8
    GPUs.
    The runs read are those of :meth:`ReadyByJob.jobs` and
    :meth:`ReadyByJob.run`: a run merges the jobs of equal key and sorts
    their tasks by a task key (or the ready order), so the order of ties
    among jobs, the one thing a partial sort could change, never shows.
    Where a key is NaN (no order to speak of) every job is sorted at once,
    as :meth:`ReadyByJob.jobs` sorts them."""

    __slots__ = ("_ready", "_key", "_sorted", "_rest")

    def __init__(self, ready: ReadyByJob, job_key: tuple[float, ...]) -> None:
        self._ready, self._key = ready, job_key
        #: the jobs sorted so far, and those after them, not yet sorted (None once they are)
        self._sorted: list[int] = []
        self._rest: list[int] | None = None
        head: list[int] = []
        rest: list[int] = []
        least = 0.0
        for j in ready._of:
            k = job_key[j]
            if k != k:  # NaN: sort them all
                self._sorted, self._rest = ready.jobs(job_key), None
                return
            if not head or k < least:
                rest += head
                head, least = [j], k
            elif k == least:
                head.append(j)
            else:
                rest.append(j)
        self._sorted = head
        self._rest = rest if rest else None

    def run(self, at: int, task_key: Callable[[int], Any] | None
            ) -> tuple[list[int], int] | None:
        """:meth:`ReadyByJob.run` of the run at ``at`` (0 first, then the
        place the last run said the next starts); None past the last."""
        jobs = self._sorted
        if at >= len(jobs):
            if self._rest is None:
                return None
            jobs += sorted(self._rest, key=self._key.__getitem__)
            self._rest = None
        return self._ready.run(jobs, at, self._key, task_key)

    def runs(self, task_key: Callable[[int], Any] | None = None) -> Iterator[list[int]]:
        """Every run, in order, as :meth:`ReadyByJob.groups` gives them:
        for a reader that mostly stops in the first (one that reads far,
        as ``tetris``'s 64 candidates do, is better served by ``groups``,
        which sorts them all without the first pass)."""
        at = 0
        while (got := self.run(at, task_key)) is not None:
            tasks, at = got
            yield tasks

    def after(self, at: int) -> list[int]:
        """The jobs from the run at ``at`` on (a list of the caller's own):
        sorted where they have been read that far, else in no order."""
        if at < len(self._sorted) or self._rest is None:
            return self._sorted[at:] + (self._rest or [])
        return list(self._rest)
