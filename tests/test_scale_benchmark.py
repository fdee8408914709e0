"""``rlsched bench scale``: one JSON document over tasks x GPUs, a cell past
its time limit recorded as such, and growth exponents that read the cells."""

from __future__ import annotations

import json

import pytest

from rlsched.evaluation.scale import bench_scale, growth_exponent, markdown
from tests.helpers import assert_one_line_error, rlsched


def test_the_growth_exponent_is_the_slope_of_log_time_against_log_tasks() -> None:
    assert growth_exponent([(1000, 2.0), (4000, 8.0), (16000, 32.0)]) == pytest.approx(1.0)
    assert growth_exponent([(1000, 1.0), (4000, 16.0)]) == pytest.approx(2.0)
    assert growth_exponent([(1000, 1.0)]) is None


def test_every_cell_is_reported_and_a_cell_past_its_limit_says_so() -> None:
    doc = bench_scale(["fifo", "share"], [100, 300], [2, 4], limit_s=60.0)
    cells = {(c["scheduler"], c["tasks"], c["devices"]): c for c in doc["cells"]}
    assert set(cells) == {(s, n, g) for s in ("fifo", "share") for n in (100, 300) for g in (2, 4)}
    for c in cells.values():  # every task placed once: one decision each
        assert c["finished"] and c["decisions"] == c["tasks"] and c["decisions_per_s"] > 0
        assert c["cpu_s"] > 0 and c["decisions_per_cpu_s"] == pytest.approx(
            c["decisions"] / c["cpu_s"], rel=0.01)  # (cpu_s to the microsecond)
        assert c["calls"] >= 1 and c["median_call_ms"] > 0
    assert set(doc["growth_exponent"]) == {"fifo", "share"}
    assert all(isinstance(v, float) for g in doc["growth_exponent"].values() for v in g.values())

    tight = bench_scale(["share"], [1000, 2000], [2], limit_s=1e-6)
    first, second = tight["cells"]
    assert first["limit_hit"] and not first["finished"] and 0 < first["decisions"] < 1000
    assert second.get("skipped") and tight["growth_exponent"]["share"]["2"] is None
    row = markdown(tight).splitlines()[2]
    assert row.startswith("| share | limit (") and row.endswith("| - | - |")


def test_a_short_cell_is_run_again_and_its_median_run_kept() -> None:
    once = bench_scale(["fifo"], [100], [2], min_s=0.0)["cells"][0]
    again = bench_scale(["fifo"], [100], [2], min_s=60.0)["cells"][0]
    assert once["runs"] == 1 and again["runs"] == 5  # 100 tasks take far under a minute
    # the same episode each time: only the timings differ
    assert again["makespan"] == once["makespan"] and again["calls"] == once["calls"]


def test_the_command_prints_json_and_writes_the_plot(tmp_path) -> None:
    proc = rlsched("bench", "scale", "--schedulers", "fifo,heft", "--tasks", "100,200",
                   "--devices", "2", "--limit", "30", "--json", str(tmp_path / "s.json"),
                   "--plot", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert json.loads((tmp_path / "s.json").read_text()) == doc
    assert len(doc["cells"]) == 4 and (tmp_path / "scale.png").stat().st_size > 0
    assert "fifo" in proc.stderr  # progress, one line per cell


@pytest.mark.parametrize("args, needle", [
    (["--tasks", "1000,many"], "--tasks"),
    (["--devices", "0"], "--devices"),
    (["--limit", "-1"], "--limit"),
    (["--min-time", "-1"], "--min-time"),
    (["--schedulers", "fifo,nope"], "nope"),
])
def test_bad_arguments_get_one_line_and_exit_2(args, needle) -> None:
    assert_one_line_error(rlsched("bench", "scale", *args), needle)
