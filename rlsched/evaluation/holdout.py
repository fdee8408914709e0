"""The leave-family-out table: a learned policy against the best heuristic,
family by family, on the families it never trained on.

A policy that is only good on the workflows it trained on has learnt those
workflows, not scheduling. So a workload is split into *families*: each
WfCommons workflow family (``montage``, ``epigenomics``, ... — see
:func:`rlsched.sources.wfcommons.family_of`), each synthetic generator, the
STG set, Gavel's traces, a job file. Each family is evaluated on its own
(its instances alone, in the run's arrivals and seeds), and the policy's
average JCT is read against the best non-learned scheduler's there, with the
paired interval :meth:`Evaluation.versus_best_non_learned` gives. The
families the policy trained on (its checkpoint's card names them) are shown
but kept out of the mean: a result that holds only there is not a result.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rlsched.evaluation.evaluate import Evaluation


@dataclass(frozen=True)
class Family:
    """One family of a workload: its ``name`` (``montage``,
    ``synthetic:pipeline``, ``stg``, ``gavel``) and the workload SPEC of its
    instances alone."""

    name: str
    spec: str


def split_families(spec: str) -> list[Family]:
    """The families of workload ``spec``: one per WfCommons family found
    under its path (those its filter keeps), else the SPEC as one family."""
    prefix, _, rest = spec.partition(":")
    if prefix == "wfcommons":
        from rlsched.sources.wfcommons import select_families

        path, kept = select_families(rest)
        return [Family(f, f"wfcommons:{path}?family={f}") for f in kept]
    return [Family(family_name(spec), spec)]


def family_name(spec: str) -> str:
    """The family a non-WfCommons workload SPEC is: its generator
    (``synthetic:NAME``), ``stg``, ``gavel``, or the SPEC itself."""
    prefix, _, rest = spec.partition(":")
    if prefix == "synthetic":
        return f"synthetic:{rest.partition('?')[0]}"
    if prefix == "stg":
        return "stg"
    if prefix == "trace":
        return rest.partition(":")[0]
    return spec


#: generators whose jobs are drawn from other generators' families
_MIXES = {"synthetic:mixed": {"synthetic:layered", "synthetic:pipeline", "synthetic:sweep"}}


def trained_on(family: Family, trained: Iterable[str]) -> bool:
    """Whether any workload SPEC of ``trained`` (workloads a checkpoint saw)
    holds instances of ``family``: a WfCommons SPEC whose filter keeps that
    family (wherever its files lie: a family is a kind of workflow, not a
    folder), or the same generator (``synthetic:mixed`` holds layered DAGs,
    pipelines and sweeps too), STG, trace format or job file."""
    for spec in trained:
        prefix, _, rest = spec.partition(":")
        if family.spec.startswith("wfcommons:"):
            if prefix == "wfcommons" and _keeps(rest.partition("?")[2])(family.name):
                return True
        elif prefix != "wfcommons" and (family_name(spec) == family.name or family.name in
                                        _MIXES.get(family_name(spec), ())):
            return True
    return False


def _keeps(query: str) -> Callable[[str], bool]:
    """Which families a WfCommons SPEC's query (``family=A,B``,
    ``exclude=A,B`` or none) keeps."""
    if not query:
        return lambda family: True
    from rlsched.sources.wfcommons import family_query

    key, names = family_query(query, f"?{query}")
    return lambda family: (family in names) == (key == "family")


def family_row(family: Family, seen: str | None, ev: Evaluation, policy: str) -> dict[str, Any]:
    """One row of the table from the evaluation of one family: the policy's
    average JCT, the best non-learned scheduler's, their ratio and its paired
    95% interval, and where the run has a bound (``oracle:NAME``), the bound
    and the fraction of the gap from the best heuristic to it that the
    policy closes (1: all of it; negative: it widened the gap). The
    heuristics chosen episode by episode with hindsight
    (:meth:`Evaluation.hindsight_choice`) say how far a policy that only
    picks among them could go: ``hindsight_ratio`` to the best of them."""
    summary = ev.summary()
    versus = ev.versus_best_non_learned().get(policy, {}).get("avg_jct")
    bounds = [name for name, s in summary.items() if s["bound"]]
    row: dict[str, Any] = {"family": family.name, "workload": family.spec,
                           "held_out": seen is None, "seen": seen,
                           "episodes": summary[policy]["episodes"],
                           "policy_avg_jct": summary[policy]["avg_jct"]}
    choice = ev.hindsight_choice().get("avg_jct")
    if choice is not None:
        row.update(hindsight_avg_jct=choice["mean"], hindsight_ratio=choice["ratio"])
    if versus is not None:
        best = float(summary[versus["against"]]["avg_jct"] or 0.0)
        row.update(best=versus["against"], best_avg_jct=best, ratio=versus["ratio"],
                   ci95=versus["ci95"])
        if bounds:
            bound = min(bounds, key=lambda n: float(summary[n]["avg_jct"] or 0.0))
            floor = float(summary[bound]["avg_jct"] or 0.0)
            row.update(bound=bound, bound_avg_jct=floor,
                       gap_closed=(best - row["policy_avg_jct"]) / (best - floor)
                       if best > floor else None)
    return row


def holdout_report(workload_specs: list[str], policy: str, trained: list[str],
                   run: Callable[[str], Evaluation], validated: list[str] | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The table over every family of ``workload_specs``: ``run(spec)``
    evaluates one family's SPEC with the run's schedulers (``policy``, the
    ``rl:`` one, among them); ``trained`` are the workloads the policy
    trained on, ``validated`` those its checkpoint was chosen on. The mean
    ratio (and gap closed) is over the families in neither only: a family
    that picked the checkpoint is no more held out than one it trained on."""
    rows = []
    for spec in workload_specs:
        for family in split_families(spec):
            seen = "trained on" if trained_on(family, trained) else \
                "validated on" if trained_on(family, validated or ()) else None
            if progress:
                progress(f"{family.name} ({seen or 'held out'})")
            rows.append(family_row(family, seen, run(family.spec), policy))
    held = [r for r in rows if r["held_out"] and r.get("ratio") is not None]
    closed = [r["gap_closed"] for r in held if r.get("gap_closed") is not None]
    hindsight = [r["hindsight_ratio"] for r in held if "hindsight_ratio" in r]
    return {"policy": policy, "trained_on": trained, "validated_on": validated or [],
            "families": rows,
            "held_out_families": len(held),
            "mean_ratio_held_out": statistics.fmean(r["ratio"] for r in held) if held else None,
            "mean_gap_closed_held_out": statistics.fmean(closed) if closed else None,
            "mean_hindsight_ratio_held_out": statistics.fmean(hindsight) if hindsight else None}
