"""Upward ranks (the longest chain of predicted work from a task to an exit),
and the ready queue ordered by them, kept current between decisions.

``cp`` orders the ready queue by rank at every decision. Recomputing every
rank whenever a prediction changes, and sorting the whole queue, costs
O(tasks) per decision once the runtime model learns (it re-predicts some
kind of task at almost every finish). :class:`RankedReady` instead follows
the view's two logs: the ready log (tasks in and out) and the belief log
(the history keys whose open tasks were re-predicted). It recomputes the
ranks of those tasks and, where a rank moved, of their ancestors, children
before parents, each from its children as the full pass does: so every rank
it reads is the float the full pass gives. The queue is a sorted list of
``(-rank, ready order, task)``, which is what a stable sort by ``-rank``
leaves.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Sequence

from rlsched.view import ClusterView, ReadyCursor, TaskState

_DONE = int(TaskState.DONE)  # a plain int: compared at every step of a re-rank


def upward_rank(cost: Sequence[float], children: Sequence[Sequence[int]]) -> list[float]:
    """Length of the longest path from each task to an exit, itself included.
    Needs parents indexed before children (as in :class:`WorkloadTable`)."""
    rank = [0.0] * len(cost)
    rank_tasks(rank, cost, children, range(len(cost)))
    return rank


def rank_tasks(rank: list[float], cost: Sequence[float], children: Sequence[Sequence[int]],
               tasks: range) -> None:
    """:func:`upward_rank` of ``tasks`` into ``rank``: a range that holds its
    tasks' children (a job's tasks, or all), each before its parents is
    reached, so the numbers are those of the whole table's pass."""
    at = rank.__getitem__
    for t in reversed(tasks):
        kids = children[t]
        # cost + 0.0 is cost: the same floats as max(..., default=0.0), faster
        rank[t] = cost[t] + max(map(at, kids)) if kids else cost[t] + 0.0


def rerank(rank: list[float], cost: Sequence[float], children: Sequence[Sequence[int]],
           parents: Sequence[Sequence[int]], seeds: Iterable[int],
           state: Sequence[int]) -> list[int]:
    """Bring ``rank`` up to date after the ``cost`` of the unfinished tasks
    ``seeds`` changed: recompute theirs, then each unfinished ancestor's
    whose child's rank moved, highest index first (children come after
    their parents), each from its children as :func:`rank_tasks` does, so
    every unfinished task's rank is the float the full pass gives. (An
    unfinished task's descendants are all unfinished, so finished tasks,
    whose ranks nobody reads, are left as they were.) Returns the tasks
    whose rank moved."""
    todo = [-t for t in seeds]
    heapq.heapify(todo)
    seen = set(todo)
    moved: list[int] = []
    at, pop, push = rank.__getitem__, heapq.heappop, heapq.heappush
    while todo:
        t = -pop(todo)
        kids = children[t]
        new = cost[t] + max(map(at, kids)) if kids else cost[t] + 0.0
        if new == rank[t]:
            continue
        rank[t] = new
        moved.append(t)
        for p in parents[t]:
            if -p not in seen and state[p] != _DONE:
                seen.add(-p)
                push(todo, -p)
    return moved


class RankedReady:
    """The ready tasks by upward rank of the view's predictions, highest
    first (ties in the ready order), as
    ``sorted(view.ready, key=lambda t: -rank[t])`` orders them.

    Only jobs with a ready task are ranked (a ready task's rank reads only
    its descendants, all in its job and unfinished). Where the view has no
    logs (the live daemon builds each view afresh), it ranks and sorts
    afresh whenever the open predictions change, with the same result.
    """

    def __init__(self) -> None:
        self._predicted: Sequence[float] | None = None
        self._rank: list[float] = []
        self._ranked: set[int] = set()  # jobs whose ranks follow the beliefs
        #: per history key, how many of its first tasks are done (never read again)
        self._done_before: dict[str, int] = {}
        self._ready = ReadyCursor()
        self._beliefs: tuple[list[str] | None, int] = (None, 0)
        self._open_knowledge = -1
        self._queue: list[tuple[float, int, int]] = []
        self._entry: dict[int, tuple[float, int, int]] = {}
        self._seq = 0

    def order(self, view: ClusterView) -> Iterator[int]:
        """The ready tasks of ``view``, highest rank first (read lazily)."""
        predicted = view.predicted
        if predicted is not self._predicted:  # a new episode, or a fork
            self._predicted, self._rank = predicted, [0.0] * len(predicted)
            self._ranked, self._done_before = set(), {}
            self._beliefs, self._open_knowledge = (None, 0), -1
            self._ready = ReadyCursor()
        if view.belief_log is None or view.ready_log is None:
            return self._afresh(view)
        log, mark = self._beliefs
        if log is not view.belief_log:  # the first view with logs: start from its beliefs
            self._ranked, self._ready = set(), ReadyCursor()
        elif mark < view.belief_mark:
            self._rerank(view, {*log[mark:view.belief_mark]})
        self._beliefs = (view.belief_log, view.belief_mark)
        changes = self._ready.changes(view)
        if changes is None:
            self._queue, self._entry, self._seq = [], {}, 0
            changes = list(view.ready)
        for e in changes:
            if e >= 0:
                self._add(view, e)
            else:
                entry = self._entry.pop(~e)
                del self._queue[bisect_left(self._queue, entry)]
        return (t for _, _, t in self._queue)

    def _afresh(self, view: ClusterView) -> Iterator[int]:
        if view.open_knowledge != self._open_knowledge:
            self._open_knowledge, self._ranked = view.open_knowledge, set()
        rank, ranked, table = self._rank, self._ranked, view.table
        job_of = table.job_of
        for t in view.ready:
            j = job_of[t]
            if j not in ranked:
                rank_tasks(rank, view.predicted, table.children, table.tasks_of(j))
                ranked.add(j)
        return iter(sorted(view.ready, key=lambda t: -rank[t]))

    def _add(self, view: ClusterView, t: int) -> None:
        table = view.table
        j = table.job_of[t]
        if j not in self._ranked:
            rank_tasks(self._rank, view.predicted, table.children, table.tasks_of(j))
            self._ranked.add(j)
        entry = (-self._rank[t], self._seq, t)
        self._seq += 1
        self._entry[t] = entry
        insort(self._queue, entry)

    def _rerank(self, view: ClusterView, keys: set[str]) -> None:
        """Recompute the ranks of the open tasks of ``keys`` in ranked jobs
        (and of their ancestors, :func:`rerank`); move the ready ones whose
        rank moved in the queue."""
        table, state, ranked = view.table, view.task_state, self._ranked
        by_key, job_of = table.tasks_by_key, table.job_of
        # a key's tasks, in index order, from its first not done (done stays
        # done) to the last of an arrived job (only those are ranked): on a
        # long stream, not every task the key will ever have
        arrived, done_before = table.job_start[view.n_arrived], self._done_before
        seeds = []
        for key in keys:
            tasks = by_key.get(key, ())
            lo = done_before.get(key, 0)
            while lo < len(tasks) and state[tasks[lo]] == _DONE:
                lo += 1
            done_before[key] = lo
            seeds += [t for t in tasks[lo:bisect_left(tasks, arrived, lo)]
                      if state[t] != _DONE and job_of[t] in ranked]
        entry_of, queue = self._entry, self._queue
        for t in rerank(self._rank, view.predicted, table.children, table.parents, seeds, state):
            entry = entry_of.get(t)
            if entry is not None:  # ready: move it in the queue
                del queue[bisect_left(queue, entry)]
                entry_of[t] = entry = (-self._rank[t], entry[1], t)
                insort(queue, entry)
