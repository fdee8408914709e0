"""The leave-family-out table: workloads split into families, the families a
policy trained on told from those it never saw, and the table itself."""

from __future__ import annotations

import json

import pytest

from rlsched.errors import InputError
from rlsched.evaluation.holdout import Family, family_name, split_families, trained_on
from rlsched.sources.specs import resolve_workload
from rlsched.sources.wfcommons import family_of
from tests.helpers import WFCOMMONS, assert_one_line_error, rlsched


def test_a_wfcommons_family_is_the_first_word_of_its_file_name():
    assert family_of("montage-chameleon-2mass-01d-001.json") == "montage"
    assert family_of("/x/1000genome-chameleon-2ch-100k-001.json") == "1000genome"
    assert family_of("bacass-dirt02-001.json") == "bacass"


def test_a_wfcommons_spec_keeps_or_leaves_out_families():
    only = resolve_workload(f"wfcommons:{WFCOMMONS}?family=montage,blast").instances(0)
    assert sorted({family_of(i.name) for i in only}) == ["blast", "montage"]
    assert len(only) == 4  # three montage instances, one blast
    rest = resolve_workload(f"wfcommons:{WFCOMMONS}?exclude=montage").instances(0)
    assert len(rest) == 15 - 3 and all(family_of(i.name) != "montage" for i in rest)


@pytest.mark.parametrize("query, problem", [("family=nope", "its families: 1000genome"),
                                            ("famly=montage", "family=A,B or by exclude=A,B"),
                                            ("family=blast&family=hic", "once"),
                                            ("family=", "names no family")])
def test_a_bad_family_filter_is_one_clear_error(query, problem):
    with pytest.raises(InputError, match=problem):
        resolve_workload(f"wfcommons:{WFCOMMONS}?{query}").instances(0)


def test_a_workload_splits_into_its_families():
    families = split_families(f"wfcommons:{WFCOMMONS}?exclude=montage,hic")
    assert [f.name for f in families] == ["1000genome", "bacass", "blast", "epigenomics",
                                          "fetchngs", "methylseq", "sarek", "scrnaseq",
                                          "srasearch"]
    assert families[2].spec == f"wfcommons:{WFCOMMONS}?family=blast"
    assert split_families("synthetic:pipeline?jobs=3") == [
        Family("synthetic:pipeline", "synthetic:pipeline?jobs=3")]
    assert family_name("stg:workloads/stg") == "stg"
    assert family_name("trace:gavel:workloads/gavel") == "gavel"


def test_a_family_counts_as_trained_on_wherever_its_files_lay():
    montage = Family("montage", "wfcommons:/elsewhere/wf?family=montage")
    assert trained_on(montage, ["wfcommons:workloads/wfcommons"])
    assert trained_on(montage, ["stg:workloads/stg", "wfcommons:a?family=blast,montage"])
    assert not trained_on(montage, ["wfcommons:workloads/wfcommons?exclude=montage"])
    assert not trained_on(montage, ["stg:workloads/stg", "synthetic:mixed"])
    pipeline = Family("synthetic:pipeline", "synthetic:pipeline?jobs=3")
    assert trained_on(pipeline, ["synthetic:pipeline?trainings=2"])
    assert trained_on(pipeline, ["synthetic:mixed?jobs=4"])  # mixed jobs are pipelines too
    assert not trained_on(pipeline, ["synthetic:sweep", "wfcommons:workloads/wfcommons"])
    assert not trained_on(Family("synthetic:mixed", "synthetic:mixed"), ["synthetic:pipeline"])


def test_the_holdout_report_marks_the_shipped_policys_training_families(tmp_path):
    """The shipped policy trained on every bundled WfCommons family and on
    STG, never on the synthetic generators: a family of each, evaluated
    against fifo, gives one row each, and only the held-out one counts."""
    out = tmp_path / "holdout.json"
    proc = rlsched("evaluate", "--workload", f"wfcommons:{WFCOMMONS}?family=blast",
                   "--workload", "synthetic:pipeline?jobs=3", "--pool", "identical:2",
                   "--arrivals", "poisson", "--scheduler", "fifo,rl:default",
                   "--holdout-report", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    rows = {r["family"]: r for r in doc["families"]}
    assert set(rows) == {"blast", "synthetic:pipeline"}
    assert not rows["blast"]["held_out"] and rows["synthetic:pipeline"]["held_out"]
    held = rows["synthetic:pipeline"]
    assert held["best"] == "fifo"
    assert held["ratio"] == pytest.approx(held["policy_avg_jct"] / held["best_avg_jct"])
    assert held["ci95"][0] <= held["ratio"] <= held["ci95"][1]
    assert doc["held_out_families"] == 1 and doc["mean_ratio_held_out"] == held["ratio"]
    assert "held-out families: 1" in proc.stdout


def test_the_holdout_report_needs_one_learned_policy():
    proc = rlsched("evaluate", "--workload", "synthetic:pipeline?jobs=3", "--pool",
                   "identical:2", "--scheduler", "fifo,sjf", "--holdout-report")
    assert_one_line_error(proc, "--holdout-report", "rl:PATH")


def test_a_family_the_checkpoint_was_chosen_on_is_not_held_out():
    """A family in a config's validation_kinds picked best.zip: the table
    marks it, and its ratio stays out of the held-out mean."""
    from rlsched.evaluation.evaluate import evaluate
    from rlsched.evaluation.holdout import holdout_report

    def run(spec):
        return evaluate([spec], "identical:2", ["fifo", "sjf", "rl:default"], arrivals="poisson",
                        seeds=2)

    import agents  # noqa: F401  (registers rl:)

    doc = holdout_report(["synthetic:pipeline?jobs=3", "synthetic:sweep?jobs=3"], "rl:default",
                         ["stg:workloads/stg"], run, validated=["synthetic:pipeline"])
    rows = {r["family"]: r for r in doc["families"]}
    assert rows["synthetic:pipeline"]["seen"] == "validated on"
    assert rows["synthetic:sweep"]["held_out"] and rows["synthetic:sweep"]["seen"] is None
    assert doc["held_out_families"] == 1
    assert doc["mean_ratio_held_out"] == rows["synthetic:sweep"]["ratio"]
    # fifo and sjf chosen episode by episode in hindsight: no worse than the better of them
    sweep = rows["synthetic:sweep"]
    assert 0 < sweep["hindsight_ratio"] <= 1.0
    assert sweep["hindsight_avg_jct"] <= sweep["best_avg_jct"]
    assert doc["mean_hindsight_ratio_held_out"] == sweep["hindsight_ratio"]


def test_a_tuned_policy_has_trained_and_been_chosen_on_what_it_was_tuned_from(tmp_path):
    import json

    from agents import trained_workloads

    zip_ = tmp_path / "tuned.zip"
    zip_.write_bytes(b"")  # (only the card is read)
    card = {"config": {"workload": "stg:workloads/stg", "kinds": [{"workload": "synthetic:gangs"}],
                       "validation_kinds": [{"workload": "synthetic:sweep"}]},
            "resumed_from": {"checkpoint": "v1.zip", "workloads": ["wfcommons:workloads/wfcommons"],
                             "validation_workloads": ["synthetic:pipeline"]}}
    zip_.with_suffix(".json").write_text(json.dumps(card))
    assert trained_workloads(str(zip_)) == (["synthetic:gangs", "wfcommons:workloads/wfcommons"],
                                            ["synthetic:pipeline", "synthetic:sweep"])
    del card["resumed_from"]
    zip_.with_suffix(".json").write_text(json.dumps(card))
    assert trained_workloads(str(zip_)) == (["synthetic:gangs"], ["synthetic:sweep"])


@pytest.mark.parametrize("query, problem", [("family=blast,nosuch", "no family nosuch"),
                                            ("exclude=nosuch", "no family nosuch")])
def test_a_family_that_is_not_there_is_an_error_not_an_empty_table(query, problem):
    with pytest.raises(InputError, match=problem):
        resolve_workload(f"wfcommons:{WFCOMMONS}?{query}").instances(0)
    with pytest.raises(InputError, match=problem):
        split_families(f"wfcommons:{WFCOMMONS}?{query}")


def test_the_holdout_report_names_an_unknown_scheduler():
    proc = rlsched("evaluate", "--workload", "synthetic:pipeline?jobs=3", "--pool",
                   "identical:2", "--scheduler", "fifo,nosuch,rl:default", "--holdout-report")
    assert_one_line_error(proc, "nosuch")
