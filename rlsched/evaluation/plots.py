"""Pictures of an evaluation: Gantt charts and a comparison of schedulers.

matplotlib is imported here only, with the non-interactive Agg backend, so
the rest of the core stays light and nothing needs a display.
"""

from __future__ import annotations

import math
from pathlib import Path

from rlsched.evaluation.evaluate import Evaluation
from rlsched.schedulers import ORACLE
from rlsched.sim import SimResult


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def best_contender(names: list[str], values: list[float | None]) -> float | None:
    """The least of ``values`` (one per scheduler of ``names``) that is not a
    bound's (``oracle:NAME`` is told the true runtimes: a bound, not a
    contender), or None."""
    contenders = [v for n, v in zip(names, values)
                  if not n.startswith(ORACLE) and v is not None and not math.isnan(v)]
    return min(contenders) if contenders else None


def gantt(result: SimResult, ax, title: str) -> None:
    """One row per device (and one for the host's CPU-only tasks); bars
    coloured by job; attempts lost to a failure hatched in red; a gang (a
    task of several GPUs) a bar on each of its devices' rows, joined by a
    line at its start."""
    cmap = _plt().get_cmap("tab20")
    n = len(result.pool)
    for a in result.trace:
        rows = [d if d >= 0 else n for d in a.devices]
        job = result.table.job_of[a.task]
        for row in rows:
            ax.barh(row, a.end - a.start, left=a.start, height=0.8,
                    color=cmap(job % 20), edgecolor="red" if not a.ok else "black",
                    linewidth=0.3, hatch="xx" if not a.ok else None)
        if len(rows) > 1:
            ax.plot([a.start, a.start], [min(rows) - 0.4, max(rows) + 0.4], color="black",
                    linewidth=1.2, solid_capstyle="butt")
    labels = [f"{d.index}: {d.model.name}" for d in result.pool.devices]
    if any(a.device < 0 for a in result.trace):
        labels.append("host (CPU)")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    for j, arrival in enumerate(result.job_arrival):
        if arrival > 0:
            ax.axvline(arrival, color=cmap(j % 20), linewidth=0.6, linestyle=":")
    ax.set_title(title, fontsize=9)


def gantt_legend(result: SimResult, most_jobs: int = 17) -> list:
    """What the Gantt chart's marks mean: a colour per job (the first
    ``most_jobs``), the hatching of an attempt lost to a failure, the dotted
    line of a job's arrival."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cmap = _plt().get_cmap("tab20")
    jobs = [j.name for j in result.table.jobs]
    handles: list = [Patch(facecolor=cmap(j % 20), edgecolor="black", linewidth=0.3, label=name)
                     for j, name in enumerate(jobs[:most_jobs])]
    if len(jobs) > most_jobs:
        handles.append(Patch(facecolor="white", label=f"... {len(jobs) - most_jobs} more jobs"))
    handles.append(Patch(facecolor="white", edgecolor="red", hatch="xx",
                         label="attempt lost to a failure"))
    handles.append(Line2D([], [], color="gray", linestyle=":", label="a job arrives"))
    if any(len(a.devices) > 1 for a in result.trace):
        handles.append(Line2D([], [], color="black", linewidth=1.2,
                              label="a gang: one task on the rows it joins"))
    return handles


def _short(name: str) -> str:
    """A scheduler's name for an axis: ``rl:checkpoints/default.zip`` → ``rl:default``."""
    if name.startswith("rl:"):
        return "rl:" + Path(name[3:]).stem
    return name


def write_plots(ev: Evaluation, directory: str | Path) -> list[Path]:
    """``gantt.png`` (first episode of each scheduler) and ``comparison.png``."""
    plt = _plt()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    names = list(ev.samples)
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 1.2 + 0.45 * len(names) *
                                                     (len(next(iter(ev.samples.values())).pool) + 1)),
                             sharex=True, squeeze=False)
    first = ev.results[0]
    for ax, name in zip(axes[:, 0], names):
        res = ev.samples[name]
        span = max(a.end for a in res.trace) - min(res.job_arrival)
        gantt(res, ax, f"{name}: makespan {span:,.1f} s")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"{first.instance} ({first.workload}), seed {first.seed}", fontsize=10)
    handles = gantt_legend(next(iter(ev.samples.values())))
    longest = max(len(h.get_label()) for h in handles)
    columns = min(len(handles), max(1, int(150 / (longest + 8))))  # 12 inches at 7 pt
    rows = math.ceil(len(handles) / columns)
    fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=7, frameon=False)
    bottom = min(0.3, (0.25 + 0.18 * rows) / fig.get_figheight())  # inches → a fraction
    fig.tight_layout(rect=(0, bottom, 1, 0.98))
    paths.append(out / "gantt.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    summary = ev.summary()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "makespan_vs_lower_bound", "makespan / lower bound"),
                           (axes[1], "jct_vs_lower_bound", "average JCT / lower bound")):
        values = [summary[n][key] for n in summary]
        # a bound (oracle:NAME, told the true runtimes) is no contender for best
        bound = [n.startswith(ORACLE) for n in summary]
        bars = ax.bar([_short(n) + (" (bound)" if b else "") for n, b in zip(summary, bound)],
                      values, color="#4c72b0")
        best = best_contender(list(summary), values)
        for bar, v, b in zip(bars, values, bound):
            if b:
                bar.set_color("#bbbbbb")
                bar.set_hatch("//")
            elif v == best:
                bar.set_color("#55a868")
            ax.annotate(f"{v:.3f}", (bar.get_x() + bar.get_width() / 2, v),
                        ha="center", va="bottom", fontsize=8)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{label}, lower is better (best in green"
                     f"{'; a bound, told true runtimes, hatched' if any(bound) else ''})",
                     fontsize=9)
        ax.set_ylabel(label)
        ax.margins(y=0.12)  # room for the figures above the bars
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
    cfg = ev.config
    fig.suptitle(f"{', '.join(cfg['workloads'])} on {cfg['pool']}, {cfg['arrivals']}"
                 f"{' load ' + str(cfg['load']) if cfg['load'] else ''}, "
                 f"{len(cfg['seeds'])} seed(s), perturb={cfg['perturb']}", fontsize=9)
    fig.tight_layout(w_pad=3.0)
    paths.append(out / "comparison.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if ev.search_history:
        paths.append(convergence(ev, out / "convergence.png"))
    return paths


def convergence(ev: Evaluation, path: Path) -> Path:
    """Best objective against schedules evaluated, for each search scheduler:
    the first plan of its first episode bold, later plans (rolling horizon)
    faint, each relative to where it started (the HEFT seed)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    colors = plt.get_cmap("tab10")
    for i, (name, plans) in enumerate(ev.search_history.items()):
        for j, history in enumerate(plans):
            evals = [e for e, _ in history]
            start = history[0][1] or 1.0
            best = [b / start for _, b in history]
            ax.plot(evals, best, color=colors(i), linewidth=1.8 if j == 0 else 0.5,
                    alpha=1.0 if j == 0 else 0.35, label=name if j == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("schedules evaluated")
    ax.set_ylabel("best objective / seed's (lower is better)")
    ax.set_title("search convergence: first episode, every plan (first plan bold)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
