"""Standard Task Graph Set (Tobita & Kasahara) ``.stg`` files, with optima.

Format: the first line is N; then one line per task, ``id time n_preds preds...``;
tasks 0 and N+1 are zero-time entry and exit dummies, dropped here since they
carry no work. ``#`` lines are comments. An ``optimal_*.csv`` beside the file or
its directory (``file,processors,lower,upper``) gives the optimal makespan on P
identical processors; each instance carries it.
"""

from __future__ import annotations

import csv
from pathlib import Path

from rlsched.errors import InputError
from rlsched.sources._io import files_in, read_text
from rlsched.workload import Instance, Job, Task, validate_job


def load_stg(path: str | Path) -> list[Instance]:
    """One instance (one job) per ``.stg`` file under ``path``."""
    files = files_in(Path(path), (".stg",), f"stg:{path}")
    optima = _optima_near(files)
    return [_load_file(p, optima.get(p.resolve(), {})) for p in files]


def _load_file(path: Path, optimum: dict[int, tuple[float, float]]) -> Instance:
    src = str(path)
    lines = [ln.split() for ln in read_text(path).splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    try:
        n = int(lines[0][0])
        rows = [[int(x) for x in row] for row in lines[1:]]
    except (IndexError, ValueError):
        raise InputError(src, "not an STG file (expected integers: N, "
                              "then 'id time n_preds preds...')") from None
    if len(rows) != n + 2:
        raise InputError(src, f"declares {n} tasks but has {len(rows) - 2} task lines")
    dummies = {rows[0][0], rows[-1][0]}
    tasks = []
    for row in rows[1:-1]:
        if len(row) < 3 or len(row) != 3 + row[2]:
            raise InputError(src, f"task line {' '.join(map(str, row))}: wrong number of predecessors")
        tid, time, _, *preds = row
        tasks.append(Task(id=str(tid), work=float(time), kind="compute", gpu_memory=0.0,
                          parents=tuple(str(p) for p in preds if p not in dummies)))
    job = Job(name=path.stem, tasks=tuple(tasks))
    validate_job(job, src)
    return Instance(name=path.stem, jobs=(job,), source=src, optimum=optimum)


def _optima_near(files: list[Path]) -> dict[Path, dict[int, tuple[float, float]]]:
    """Optima from every ``optimal_*.csv`` in the files' directories and their parents."""
    dirs = {d for f in files for d in (f.parent, f.parent.parent)}
    optima: dict[Path, dict[int, tuple[float, float]]] = {}
    for d in sorted(dirs):
        for table in sorted(d.glob("optimal_*.csv")):
            try:
                with table.open(newline="") as fh:
                    for row in csv.DictReader(fh):
                        target = (d / row["file"]).resolve()
                        optima.setdefault(target, {})[int(row["processors"])] = (
                            float(row["lower"]), float(row["upper"]))
            except (KeyError, ValueError, OSError, csv.Error) as e:
                raise InputError(str(table), f"not an optimum table ({e})") from None
    return optima
