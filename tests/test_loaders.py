"""Workload sources read what their files say, and name the file when they cannot."""

from __future__ import annotations

import json

import pytest

from rlsched.errors import InputError
from rlsched.sources.jobfile import load_jobfile, parse_duration, parse_size_gib
from rlsched.sources.specs import resolve_pool, resolve_workload
from rlsched.sources.stg import load_stg
from rlsched.sources.synthetic import generate
from rlsched.sources.wfcommons import load_wfcommons
from rlsched.table import WorkloadTable
from tests.helpers import ROOT, STG, WFCOMMONS


def test_wfcommons_keeps_measured_runtimes_and_edges():
    path = WFCOMMONS / "bacass-dirt02-001.json"
    (inst,) = load_wfcommons(path)
    doc = json.loads(path.read_text())
    measured = {t["id"]: t["runtimeInSeconds"] for t in doc["workflow"]["execution"]["tasks"]}
    tasks = {t.id: t for t in inst.jobs[0].tasks}
    assert {k: t.work for k, t in tasks.items()} == measured
    spec = {t["id"]: t for t in doc["workflow"]["specification"]["tasks"]}
    for tid, t in tasks.items():
        assert set(t.parents) == set(spec[tid]["parents"])
        assert len(t.data_from_parents) == len(t.parents)
    assert any(d > 0 for t in tasks.values() for d in t.data_from_parents)


def test_wfcommons_gpu_attributes_are_stable_across_loads():
    a = load_wfcommons(WFCOMMONS)
    b = load_wfcommons(WFCOMMONS)
    assert a == b
    kinds = {t.kind for inst in a for t in inst.jobs[0].tasks}
    assert kinds == {"compute", "memory"}


def test_stg_drops_the_dummy_entry_and_exit_and_keeps_times():
    (inst,) = load_stg(STG / "50" / "rand0000.stg")
    tasks = {t.id: t for t in inst.jobs[0].tasks}
    assert len(tasks) == 50 and "0" not in tasks and "51" not in tasks
    assert tasks["1"].work == 9.0 and tasks["1"].parents == ()
    assert set(tasks["10"].parents) == {"2", "6", "8"}
    assert inst.optimum[4] == (66.0, 66.0)


def test_job_files_read_durations_sizes_and_dependencies():
    inst = load_jobfile(ROOT / "examples" / "jobs" / "train-eval.yaml")
    (job,) = inst.jobs
    assert job.priority == 2 and job.deadline == 3 * 3600
    t = {t.id: t for t in job.tasks}
    assert t["prepare"].gpus == 0 and t["prepare"].work == 300
    assert t["train-large"].gpu_memory == 20 and t["train-large"].retries == 1
    assert t["evaluate"].parents == ("train-small", "train-large")
    assert t["evaluate"].kind == "memory"


@pytest.mark.parametrize("text,seconds", [(90, 90.0), ("90s", 90.0), ("40m", 2400.0),
                                          ("1.5h", 5400.0), ("2 d", 172800.0)])
def test_durations(text, seconds):
    assert parse_duration(text, "f", "x") == seconds


@pytest.mark.parametrize("text,gib", [(12, 12.0), ("12GiB", 12.0), ("512MiB", 0.5),
                                      ("1TiB", 1024.0)])
def test_sizes(text, gib):
    assert parse_size_gib(text, "f", "x") == gib


def test_synthetic_generators_are_deterministic_under_a_seed():
    a = generate("layered", {"tasks": "40", "jobs": "3"}, 7, "s")
    b = generate("layered", {"tasks": "40", "jobs": "3"}, 7, "s")
    c = generate("layered", {"tasks": "40", "jobs": "3"}, 8, "s")
    assert a == b and a != c
    assert [len(j.tasks) for j in a.jobs] == [40, 40, 40]


@pytest.mark.parametrize("name", ["layered", "pipeline", "sweep", "mixed"])
def test_every_generator_makes_valid_dags(name):
    inst = generate(name, {"jobs": "4"}, 0, name)
    table = WorkloadTable.from_jobs(inst.jobs)
    for t, ps in enumerate(table.parents):
        assert all(p < t for p in ps)


def test_pipeline_is_prepare_then_trainings_then_evaluation():
    (job,) = generate("pipeline", {"trainings": "3"}, 0, "p").jobs
    t = {t.id: t for t in job.tasks}
    assert t["prepare"].gpus == 0 and t["report"].gpus == 0
    assert all(t[f"train{i}"].parents == ("prepare",) for i in range(3))
    assert set(t["report"].parents) == {"eval0", "eval1", "eval2"}


def test_layered_width_makes_fatter_graphs():
    def levels(width):
        (job,) = generate("layered", {"tasks": "100", "width": str(width)}, 0, "l").jobs
        depth = {}
        for task in job.tasks:
            depth[task.id] = 1 + max((depth[p] for p in task.parents), default=0)
        return max(depth.values())

    assert levels(0.8) < levels(0.2)


@pytest.mark.parametrize("spec,problem", [
    ("nope:x", "unknown workload SPEC"),
    ("synthetic:nope", "unknown generator 'nope'"),
    ("synthetic:layered?tasks=abc", "is not a int"),
    ("synthetic:layered?colour=red", "unknown parameter 'colour'"),
    ("stg:/no/such/dir", "no such file or directory"),
])
def test_bad_workload_specs_say_what_is_wrong(spec, problem):
    with pytest.raises(InputError, match=problem):
        resolve_workload(spec)


@pytest.mark.parametrize("spec,problem", [
    ("cluster:4", "unknown pool SPEC"),
    ("identical:zero", "not a device count"),
    ("identical:0", "at least one device"),
    ("identical:2?model=gtx-480", "unknown GPU model 'gtx-480'"),
    ("preset:nope", "unknown pool preset 'nope'"),
])
def test_bad_pool_specs_say_what_is_wrong(spec, problem):
    with pytest.raises(InputError, match=problem):
        resolve_pool(spec)


def test_pool_files_and_presets():
    pool = resolve_pool(f"file:{ROOT / 'examples' / 'pools' / 'my-workstation.yaml'}")
    assert [d.model.name for d in pool.devices] == ["rtx-4090", "rtx-3090", "rtx-3090",
                                                     "old-titan"]
    assert pool.devices[3].model.memory_gib == 12
    ws = resolve_pool("preset:workstation-4")
    assert [d.model.name for d in ws.devices] == ["a100-80gb", "rtx-4090", "rtx-3090",
                                                  "rtx-3090"]
    a100, r4090, r3090 = (ws.devices[i].model for i in range(3))
    assert r3090.compute_speed == 1.0 == r3090.memory_speed
    assert r4090.compute_speed > a100.compute_speed > 1.0  # spec sheets: 4090 leads on FLOPs
    assert a100.memory_speed > r4090.memory_speed > 1.0  # and the A100 on bandwidth


@pytest.mark.parametrize("values, p", [
    ([1.0, 2.0, 4.0, 8.0], [0.1, 0.2, 0.3, 0.4]),
    ([1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 20.0], [0.2, 0.25, 0.2, 0.15, 0.1, 0.07, 0.03]),  # memory
    ([1, 2, 4, 8], [436 / 1181, 226 / 1181, 451 / 1181, 68 / 1181]),  # gang sizes
])
def test_a_weighted_draw_is_numpys_choice_and_leaves_the_generator_where_it_does(
        values, p) -> None:
    # the generators draw each task's memory this way: the workloads (and so
    # every pinned schedule) are those numpy's choice(values, p=p) made
    import numpy as np

    from rlsched.sources.synthetic import WeightedChoice

    draw = WeightedChoice(values, p)
    ours, numpys = np.random.default_rng(11), np.random.default_rng(11)
    got = [draw(ours) for _ in range(5000)]
    assert got == [numpys.choice(values, p=p).item() for _ in range(5000)]
    assert set(got) == set(values)  # every value drawn
    assert ours.random() == numpys.random()
