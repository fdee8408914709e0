"""The Standard Task Graph Set's proven optima are an oracle for the simulator:
no schedule may beat them, and a careful HEFT comes within 2% of them."""

from __future__ import annotations

import statistics

import pytest

from rlsched.metrics import optimum_for
from rlsched.pool import identical_pool
from rlsched.schedulers import SCHEDULERS
from tests.helpers import simulate


def test_every_instance_carries_its_optima(stg_instances):
    assert len(stg_instances) == 90
    for inst in stg_instances:
        assert set(inst.optimum) == {2, 4, 8, 16}
        assert inst.n_tasks == 50


@pytest.mark.parametrize("processors", [2, 4, 8, 16])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_no_makespan_is_below_the_proven_optimum(stg_instances, scheduler, processors):
    pool = identical_pool(processors)
    for inst in stg_instances:
        _, m = simulate(inst, pool, scheduler)
        optimum = optimum_for(inst.optimum, pool)
        assert m.makespan >= optimum - 1e-6, (inst.name, m.makespan, optimum)
        assert m.makespan >= m.lower_bound - 1e-6


@pytest.mark.parametrize("processors", [2, 4, 8, 16])
def test_heft_is_within_two_percent_of_the_optimum_on_average(stg_instances, processors):
    pool = identical_pool(processors)
    ratios = []
    for inst in stg_instances:
        _, m = simulate(inst, pool, "heft")
        ratios.append(m.makespan / optimum_for(inst.optimum, pool))
    assert statistics.fmean(ratios) <= 1.02


def test_the_optimum_applies_only_to_identical_reference_devices(stg_instances):
    from rlsched.pool import preset_pool

    inst = stg_instances[0]
    assert optimum_for(inst.optimum, identical_pool(4)) == 66.0
    assert optimum_for(inst.optimum, identical_pool(3)) is None
    assert optimum_for(inst.optimum, identical_pool(4, "a100-80gb")) is None
    assert optimum_for(inst.optimum, preset_pool("workstation-4")) is None
