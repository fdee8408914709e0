"""A scheduler that takes seconds to load, served from the first millisecond.

A learned policy needs torch and its checkpoint: two seconds and more before
it can decide. A queue that waits that long for its first start loses to a
spooler that starts in milliseconds. So ``serve`` loads such a scheduler in a
thread and decides with a heuristic (``share``, the best of them on average
JCT) until it is ready; from then on the loaded one decides. The switch is
recorded in the store's events (``scheduler_ready``), with how long the load
took and how many decisions the heuristic made meanwhile.

A load that fails (a checkpoint that does not match, say) is raised from the
next decision, so ``serve`` stops with its one line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rlsched.schedulers import Scheduler
from rlsched.view import ClusterView, Placement


class WarmStart(Scheduler):
    """Decide with ``fallback`` until ``load()``, run in a thread, returns the
    scheduler named ``name``; then with it.

    :param on_ready: called once with the loaded scheduler, the seconds the
        load took and the decisions the fallback made meanwhile
    """

    def __init__(self, name: str, load: Callable[[], Scheduler], fallback: Scheduler,
                 on_ready: Callable[[Scheduler, float, int], None] | None = None) -> None:
        self.name = name
        self.fallback = fallback
        self.loaded: Scheduler | None = None
        #: decisions (on a view with a ready task) in all, and the fallback's
        self.decisions = self.fallback_decisions = 0
        #: seconds the load took, once it has ended well
        self.load_s: float | None = None
        self._seed = 0
        self._on_ready = on_ready
        self._result: list[Scheduler | BaseException] = []
        self._began = time.monotonic()
        self._thread = threading.Thread(target=self._load, args=(load,), daemon=True,
                                        name=f"load {name}")
        self._thread.start()

    def _load(self, load: Callable[[], Scheduler]) -> None:
        try:
            self._result.append(load())
        except BaseException as e:  # handed to the deciding thread, which raises it
            self._result.append(e)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the load to end (for tests and benchmarks); whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def reset(self, seed: int = 0) -> None:
        self._seed = seed
        self.fallback.reset(seed)
        if self.loaded is not None:
            self.loaded.reset(seed)

    def poll(self) -> None:
        """Switch over if the load has ended (raising its error if it failed):
        ``serve`` polls every round, so a bad checkpoint stops it even while
        nothing is ready to decide on."""
        self._current()

    def _current(self) -> Scheduler:
        if self.loaded is None and self._result:
            result = self._result[0]
            if isinstance(result, BaseException):
                raise result
            result.reset(self._seed)
            self.loaded = result
            self.load_s = time.monotonic() - self._began
            if self._on_ready is not None:
                self._on_ready(result, self.load_s, self.fallback_decisions)
        return self.loaded or self.fallback

    def decide(self, view: ClusterView) -> list[Placement]:
        current = self._current()
        if view.ready:
            self.decisions += 1
            if current is self.fallback:
                self.fallback_decisions += 1
        return current.decide(view)

    def _decide(self, view: ClusterView) -> list[Placement]:  # decide is the entry point
        return self.decide(view)
