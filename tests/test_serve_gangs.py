"""A task of several GPUs, served on a fake pool with real processes: it sees
exactly its devices in CUDA_VISIBLE_DEVICES, and no device is handed out
twice while it runs."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from tests.helpers import rlsched
from tests.test_serve import attempts


def marker_command(markers, name):
    """Write CUDA_VISIBLE_DEVICES to a marker, holding the GPUs a little while."""
    code = (f"import os,time; time.sleep(0.6); open('{markers}/{name}','a')"
            f".write(os.environ['CUDA_VISIBLE_DEVICES']+chr(10))")
    return f"{sys.executable} -c \"{code}\""


def devices_of(row):
    return [row["device"], *(int(k) for k in (row["gang"] or "").split(",") if k)]


@pytest.mark.parametrize("scheduler", ["fifo", "share", "backfill"])
def test_a_two_gpu_task_beside_one_gpu_tasks_sees_exactly_its_two_gpus(tmp_path, scheduler):
    state, markers = tmp_path / "state", tmp_path / "markers"
    markers.mkdir()
    doc = {"name": "mix", "tasks": [
        {"id": "train", "command": marker_command(markers, "train"), "gpus": 2,
         "gpu_memory": 20, "estimate": 1},
        *({"id": f"small{i}", "command": marker_command(markers, f"small{i}"),
           "gpu_memory": 20, "estimate": 1} for i in range(5)),
    ]}
    job = tmp_path / "mix.yaml"
    job.write_text(yaml.safe_dump(doc))
    assert rlsched("submit", job, state=state).returncode == 0
    proc = rlsched("serve", "--pool", "fake:4", "--scheduler", scheduler, "--tick", "0.05",
                   "--exit-when-idle", state=state)
    assert proc.returncode == 0, proc.stderr

    rows = [r for r in attempts(state) if r["exit_code"] == 0]
    assert sorted(r["task_id"] for r in rows) == ["small0", "small1", "small2", "small3",
                                                  "small4", "train"]
    by_task = {r["task_id"]: r for r in rows}
    gang = devices_of(by_task["train"])
    assert len(set(gang)) == 2
    seen = (markers / "train").read_text().splitlines()
    assert seen == [",".join(str(d) for d in sorted(gang))]  # both, in PCI bus order
    for r in rows:
        if r["task_id"] != "train":
            assert (markers / r["task_id"]).read_text().splitlines() == [str(r["device"])]
    # 20 GiB on 24 GiB cards: no two of these tasks ever overlapped on one device
    for r in rows:
        for s in rows:
            if r["id"] != s["id"] and set(devices_of(r)) & set(devices_of(s)):
                assert r["ended"] <= s["started"] + 0.05 or s["ended"] <= r["started"] + 0.05

    status = json.loads(rlsched("status", "--json", state=state).stdout)
    (train,) = [t for t in status["jobs"][0]["tasks"] if t["id"] == "train"]
    assert sorted(train["devices"]) == sorted(gang)
    table = rlsched("status", state=state).stdout
    assert ",".join(str(d) for d in sorted(gang)) in table


def test_a_gang_bigger_than_the_pool_is_refused_at_submit_once_serve_knows_the_pool(tmp_path):
    state = tmp_path / "state"
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({"name": "warm", "tasks": [{"id": "t", "command": "true"}]}))
    assert rlsched("submit", small, state=state).returncode == 0
    assert rlsched("serve", "--pool", "fake:2", "--tick", "0.05", "--exit-when-idle",
                   state=state).returncode == 0
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"name": "big", "tasks": [
        {"id": "train", "command": "true", "gpus": 4}]}))
    proc = rlsched("submit", big, state=state)
    assert proc.returncode == 2
    assert "needs 4 GPUs at once" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
