"""A scheduler that reads no beliefs (``reads_beliefs = False``: fifo,
random, backfill) makes the same schedule whether or not the simulator keeps
the runtime model learning, so the simulator skips the model's cost for it.
Checked through failures, throttling and outside load, streams and batches,
mixed and wide pools, and noisy or missing estimates; with a gang the model
learns whatever the scheduler says."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rlsched.arrivals import batch, poisson
from rlsched.estimates import EstimateModel
from rlsched.evaluation.evaluate import run_episode
from rlsched.perturbations import Perturbations
from rlsched.pool import Pool, identical_pool, preset_pool
from rlsched.schedulers import make_scheduler
from rlsched.sim import Simulator
from rlsched.sources.synthetic import generate
from rlsched.workload import Instance

_OFTEN = replace(Perturbations.parse("all"), throttle_every=300.0, throttle_for=200.0,
                 external_every=400.0, fail_every=6000.0, fail_for=100.0)


def _trace(instance: Instance, pool: Pool, scheduler: str, learns: bool, estimates: str,
           seed: int = 3) -> list:
    sched = make_scheduler(scheduler)
    sched.reset(seed)
    sim = Simulator(instance, pool, seed, _OFTEN, EstimateModel.parse(estimates),
                    idle_only=sched.idle_only, learns=learns)
    view = sim.reset()
    while view is not None:
        view = sim.step(sched.decide(view))
    return sim.trace


def _cases() -> list[tuple[str, Instance, Pool]]:
    lab = preset_pool("lab-8")
    wide = identical_pool(40)
    mixed = generate("mixed", {"jobs": "40"}, 4, "test")
    layered = generate("layered", {"jobs": "30"}, 8, "test")
    return [("stream on lab-8", poisson(mixed.jobs, lab, 0.9, np.random.default_rng(4)), lab),
            ("batch on lab-8", batch(generate("layered", {"jobs": "6"}, 2, "test")), lab),
            ("stream on 40 GPUs", poisson(layered.jobs, wide, 0.95, np.random.default_rng(8)),
             wide)]


@pytest.mark.parametrize("scheduler", ["fifo", "random", "backfill"])
@pytest.mark.parametrize("estimates", ["default", "none"])
def test_a_scheduler_that_reads_no_beliefs_makes_one_schedule_with_or_without_learning(
        scheduler, estimates) -> None:
    assert not make_scheduler(scheduler).reads_beliefs
    for label, instance, pool in _cases():
        learning = _trace(instance, pool, scheduler, True, estimates)
        assert _trace(instance, pool, scheduler, False, estimates) == learning, label
        assert any(not a.ok for a in learning), f"{label}: no failure; the perturbations did not bite"


def test_a_scheduler_that_reads_beliefs_would_be_misled_so_it_keeps_them_current() -> None:
    """The check above can fail: sjf, which orders jobs by their predicted
    remaining work, schedules otherwise when the model stops learning, and
    evaluation keeps the model learning for it."""
    assert make_scheduler("sjf").reads_beliefs
    _, instance, pool = _cases()[0]
    assert _trace(instance, pool, "sjf", False, "default") != \
        _trace(instance, pool, "sjf", True, "default")


def test_with_a_gang_in_the_workload_the_model_learns_whatever_the_scheduler_reads() -> None:
    instance = batch(generate("gangs", {"jobs": "6"}, 1, "test"))
    pool = identical_pool(8)
    assert Simulator(instance, pool, 0, learns=False).learns
    assert not Simulator(batch(generate("layered", {"jobs": "2"}, 1, "test")), pool, 0,
                         learns=False).learns


def test_evaluation_skips_the_model_only_for_those_that_read_no_beliefs(monkeypatch) -> None:
    seen: dict[str, bool] = {}
    real = Simulator.__init__

    def spy(self, *args, **kwargs) -> None:
        real(self, *args, **kwargs)
        seen[current] = self.learns

    monkeypatch.setattr(Simulator, "__init__", spy)
    instance = batch(generate("layered", {"jobs": "2"}, 1, "test"))
    for current in ("fifo", "random", "backfill", "sjf", "share", "las", "heft"):
        run_episode(instance, identical_pool(4), make_scheduler(current), 0,
                    estimates=EstimateModel.parse("default"))
    assert seen == {"fifo": False, "random": False, "backfill": False, "sjf": True,
                    "share": True, "las": True, "heft": True}
