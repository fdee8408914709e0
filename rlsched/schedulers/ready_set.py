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

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rlsched.view import ClusterView, ReadyCursor


class ReadyByJob:
    """Ready tasks per job, each with its place in the ready order (the order
    in which they became ready, as :attr:`ClusterView.ready` lists them)."""

    def __init__(self) -> None:
        self._cursor = ReadyCursor()
        self._of: dict[int, dict[int, int]] = {}
        self._seq = 0
        self._token: object = None
        self._sorted: dict[int, list[int]] = {}  # job -> its ready tasks, sorted

    def sync(self, view: ClusterView) -> None:
        """Bring the groups up to ``view``."""
        job_of = view.table.job_of
        changes = self._cursor.changes(view)
        if changes is None:
            of: dict[int, dict[int, int]] = {}
            self._of, self._sorted = of, {}
            for i, t in enumerate(view.ready):
                group = of.get(job_of[t])
                if group is None:
                    of[job_of[t]] = {t: i}
                else:
                    group[t] = i
            self._seq = len(view.ready)
            return
        of, cache = self._of, self._sorted
        for e in changes:
            t = e if e >= 0 else ~e
            j = job_of[t]
            cache.pop(j, None)
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

    def groups(self, job_key: Sequence[Any], task_key: Callable[[int], Any] | None = None,
               token: object = None) -> Iterator[list[int]]:
        """The ready tasks, lazily, as lists in the order ``sorted(view.ready,
        key=lambda t: (job_key[job_of[t]], task_key(t)))`` gives (``task_key``
        None: the ready order, as a stable sort leaves ties): one list per
        job, by key, or one for the jobs that share a key, merged by
        ``task_key``. Only the jobs reached are sorted within; a job's sorted
        list is kept until its ready tasks change or ``token`` does (whatever
        ``task_key`` reads, such as the view's knowledge). The lists are the
        cache's own: read them, never change them."""
        if token != self._token:
            self._token, self._sorted = token, {}
        cache, of = self._sorted, self._of
        jobs = sorted(of, key=job_key.__getitem__)
        i, n = 0, len(jobs)
        while i < n:
            j = jobs[i]
            key = job_key[j]
            k = i + 1
            while k < n and job_key[jobs[k]] == key:
                k += 1
            if k == i + 1:
                tasks = cache.get(j)
                if tasks is None:
                    tasks = list(of[j])  # a dict keeps the ready order
                    if task_key is not None:
                        tasks.sort(key=task_key)
                    cache[j] = tasks
            else:
                merged = {t: s for g in jobs[i:k] for t, s in of[g].items()}
                tasks = list(merged)
                tasks.sort(key=merged.__getitem__ if task_key is None else task_key)
            yield tasks
            i = k
