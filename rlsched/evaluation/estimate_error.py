"""``rlsched bench estimates``: average JCT of every heuristic against how
much schedulers are told of runtimes (exact, the default estimates, none),
on the online benchmark, as JSON (or the README's markdown table).

Every model runs on the same episodes (the seed draws arrivals and
perturbations alike), so a column compares schedulers and a row shows what
knowing less costs each of them. ``oracle:share`` is share told the truth
whatever the column: a bound, not a scheduler to beat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlsched.estimates import EstimateModel
from rlsched.evaluation.evaluate import evaluate

#: every heuristic, the searches, and the bound
SCHEDULERS = ("random", "fifo", "sjf", "cp", "tetris", "heft", "share", "las", "ga", "sa",
              "oracle:share")
MODELS = ("exact", "default", "none")


def bench_estimates(workload: str = "wfcommons:workloads/wfcommons",
                    pool: str = "preset:workstation-4", seeds: int = 5, seed_offset: int = 1000,
                    load: float = 0.85, perturb: str = "all",
                    schedulers: tuple[str, ...] = SCHEDULERS, models: tuple[str, ...] = MODELS,
                    search_evaluations: int = 100,
                    progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """``{"config": ..., "avg_jct": {model spec: {scheduler: seconds}}}``;
    the searches get ``search_evaluations`` schedules per plan (deterministic)."""
    out: dict[str, Any] = {
        "config": {"workload": workload, "pool": pool, "arrivals": "poisson", "load": load,
                   "perturb": perturb, "seeds": list(range(seed_offset, seed_offset + seeds)),
                   "search_evaluations": search_evaluations},
        "avg_jct": {}}
    for i, model in enumerate(models):
        spec = EstimateModel.parse(model).spec

        def tick(done: int, total: int, label: str, i: int = i, spec: str = spec) -> None:
            if progress:
                progress(i * total + done, len(models) * total, f"{spec}: {label}")

        ev = evaluate([workload], pool, list(schedulers), arrivals="poisson", load=load,
                      seeds=seeds, seed_offset=seed_offset, perturb=perturb, estimates=model,
                      search_evaluations=search_evaluations, progress=tick)
        out["avg_jct"][spec] = {name: s["avg_jct"] for name, s in ev.summary().items()}
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The table of :func:`bench_estimates`: a row per scheduler, a column per
    estimate model, the best non-bound of each column in bold."""
    models = list(doc["avg_jct"])
    names = list(doc["avg_jct"][models[0]])
    best = {m: min(v for n, v in doc["avg_jct"][m].items() if not n.startswith("oracle:"))
            for m in models}
    default = EstimateModel.parse("default").spec
    lines = ["| scheduler | " + " | ".join(f"{m} (the default)" if m == default else m
                                          for m in models) + " |",
             "| --- | " + " | ".join("---:" for _ in models) + " |"]
    for name in names:
        cells = []
        for m in models:
            v = doc["avg_jct"][m][name]
            text = f"{v:,.1f} s"
            cells.append(f"**{text}**" if v == best[m] and not name.startswith("oracle:")
                         else text)
        shown = f"{name} (bound)" if name.startswith("oracle:") else name
        lines.append(f"| {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
