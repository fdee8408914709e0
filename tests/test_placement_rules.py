"""Per-job and per-task GPU placement rules (``gpus_allowed`` / ``gpus_avoid``):
every scheduler honours them, in the simulator and live."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from rlsched.errors import InputError
from rlsched.pool import identical_pool, preset_pool
from rlsched.sources.jobfile import load_jobfile
from tests.helpers import assert_one_line_error, rlsched, simulate

SCHEDULERS = ["random", "fifo", "sjf", "cp", "tetris", "heft", "share", "ga", "sa",
              "rl:checkpoints/default.zip"]


def job_file(tmp_path, job_rules=None, task_rules=None, n=6, name="ruled"):
    tasks = [{"id": f"t{i}", "command": "true", "estimate": 10 + i, "gpu_memory": 4,
              **({"after": [f"t{i - 2}"]} if i >= 2 else {}), **(task_rules or {})}
             for i in range(n)]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "tasks": tasks, **(job_rules or {})}))
    return path


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_keeps_a_job_off_the_gpus_it_avoids(tmp_path, scheduler):
    import agents  # noqa: F401  registers rl:

    instance = load_jobfile(job_file(tmp_path, {"gpus_avoid": [0, 2]}))
    result, _ = simulate(instance, identical_pool(4), scheduler)
    assert {a.device for a in result.trace} == {1, 3}


@pytest.mark.parametrize("scheduler", ["fifo", "heft", "share", "tetris"])
def test_gpus_allowed_by_model_name_and_a_tasks_own_rule(tmp_path, scheduler):
    # workstation-4: 0 a100-80gb, 1 rtx-4090, 2 and 3 rtx-3090
    instance = load_jobfile(job_file(tmp_path, {"gpus_allowed": ["rtx-3090"]},
                                     {"gpus_allowed": ["rtx-4090", 0]}, n=4))
    result, _ = simulate(instance, preset_pool("workstation-4"), scheduler)
    assert {a.device for a in result.trace} <= {0, 1}  # the tasks' rule replaced the job's
    instance = load_jobfile(job_file(tmp_path, {"gpus_allowed": ["rtx-3090"]}, n=4))
    result, _ = simulate(instance, preset_pool("workstation-4"), scheduler)
    assert {a.device for a in result.trace} <= {2, 3}


def test_rules_that_leave_a_task_no_gpu_are_refused_with_one_line(tmp_path):
    path = job_file(tmp_path, {"gpus_allowed": ["h100-sxm"]})  # a model, none in this pool
    assert_one_line_error(rlsched("evaluate", "--workload", f"jobs:{path}", "--pool",
                                  "identical:2"), str(path), "leave it no GPU of pool")
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"name": "big", "gpus_allowed": ["rtx-3090"], "tasks": [
        {"id": "t", "estimate": 1, "gpu_memory": 40}]}))
    assert_one_line_error(rlsched("evaluate", "--workload", f"jobs:{big}", "--pool",
                                  "preset:workstation-4"), "no GPU it may use")


@pytest.mark.parametrize("bad", [[-1], [True], ["a b"], [1.5], {"x": 1}])
def test_a_rule_entry_that_is_neither_an_index_nor_a_model_name_is_refused(tmp_path, bad):
    with pytest.raises(InputError, match="neither a GPU index"):
        load_jobfile(job_file(tmp_path, {"gpus_avoid": bad}))


def test_the_live_scheduler_keeps_a_job_off_the_gpu_it_avoids(tmp_path):
    state = tmp_path / "state"
    avoid = job_file(tmp_path, {"gpus_avoid": [0]}, n=4, name="avoids-0")
    free = job_file(tmp_path, n=4, name="anywhere")
    assert rlsched("submit", avoid, free, state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:2", "--tick", "0.05", "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr
    assert {j["state"] for j in json.loads(rlsched("status", "--json", state=state).stdout)
            ["jobs"]} == {"done"}
    db = sqlite3.connect(state / "rlsched.db")
    used = dict(db.execute("SELECT j.name, GROUP_CONCAT(DISTINCT a.device) FROM attempts a "
                           "JOIN tasks t ON a.task=t.id JOIN jobs j ON t.job=j.id GROUP BY j.name"))
    db.close()
    assert used["avoids-0"] == "1"


def test_once_serve_knows_its_pool_submit_refuses_rules_no_gpu_satisfies(tmp_path):
    from rlsched.live.daemon import Daemon
    from rlsched.live.store import Store

    state = tmp_path / "state"
    early = job_file(tmp_path, {"gpus_allowed": [7]}, n=1, name="early")
    assert rlsched("submit", early, state=state).returncode == 0  # no pool known yet
    daemon = Daemon(Store(state), "fake:4", "share")
    try:
        daemon.tick()
    finally:
        daemon.close()
    (job,) = json.loads(rlsched("status", "--json", state=state).stdout)["jobs"]
    assert job["tasks"][0]["reason"] == ("unschedulable: its gpus_allowed/gpus_avoid leave it "
                                         "no GPU of the pool")
    for rules, needle in (({"gpus_allowed": [7]}, "leave it no GPU"),
                          ({"gpus_avoid": ["rtx-3090"]}, "leave it no GPU"),
                          ({"gpus_avoid": ["rtx-3900"]}, "unknown GPU model 'rtx-3900'")):
        path = job_file(tmp_path, rules, n=1, name="late")
        assert_one_line_error(rlsched("submit", path, state=state), needle)
    assert_one_line_error(rlsched("drain", "--gpu", "9", state=state),
                          "serve's pool has no GPU 9 (its GPUs: 0, 1, 2, 3)")


def test_a_mistyped_model_name_is_refused_in_simulation_too(tmp_path):
    path = job_file(tmp_path, {"gpus_avoid": ["rtx-3900"]})
    assert_one_line_error(rlsched("evaluate", "--workload", f"jobs:{path}", "--pool",
                                  "identical:2"), "unknown GPU model 'rtx-3900'", "rtx-3090")
