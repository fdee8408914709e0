"""The GPU catalogue and the preset pools: the older generations of GPU
cluster traces rank as their data sheets say, and NVML names find them."""

from __future__ import annotations

from rlsched.pool import CATALOGUE, model_for_gpu, preset_pool


def test_the_trace_generations_rank_k80_below_p100_below_v100_below_the_reference():
    k80, p100, v100 = (CATALOGUE[n] for n in ("k80", "p100", "v100-16gb"))
    for kind in ("compute", "memory"):
        assert k80.speed(kind) < p100.speed(kind) < v100.speed(kind) < 1.0
    assert (k80.memory_gib, p100.memory_gib, v100.memory_gib) == (12, 16, 16)


def test_nvml_names_of_the_older_cards_find_their_models_with_the_memory_they_report():
    assert model_for_gpu("Tesla K80", 11.17).name == "k80"
    p100 = model_for_gpu("Tesla P100-PCIE-16GB", 15.9)
    assert p100.name == "p100" and p100.memory_gib == 15.9
    assert model_for_gpu("Tesla V100-SXM2-16GB", 15.8).compute_speed == \
        CATALOGUE["v100-16gb"].compute_speed


def test_the_trace_presets_hold_the_three_generations():
    names = [d.model.name for d in preset_pool("lab-kpv").devices]
    assert names == ["v100-16gb", "p100", "p100", "k80", "k80", "k80"]
    mix = [d.model.name for d in preset_pool("kpv-12").devices]
    assert {n: mix.count(n) for n in set(mix)} == {"v100-16gb": 4, "p100": 4, "k80": 4}
