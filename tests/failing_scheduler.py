"""A scheduler that fails at its first decision, registered as ``failing``
when imported (as ``agents`` registers ``rl:``): what ``evaluate`` does when
an episode raises in one of its worker processes."""

from __future__ import annotations

from rlsched.errors import SchedulerError
from rlsched.schedulers import SCHEDULERS, Scheduler
from rlsched.view import ClusterView, Placement


class FailingScheduler(Scheduler):
    name = "failing"

    def _decide(self, view: ClusterView) -> list[Placement]:
        raise SchedulerError("failing: refuses to decide")


SCHEDULERS["failing"] = FailingScheduler
