"""What many tests share: the bundled workloads, running an episode and
checking its schedule, running the command line, reading a store, waiting."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from rlsched.evaluation.evaluate import run_episode
from rlsched.metrics import measure
from rlsched.schedulers import make_scheduler

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "workloads"
STG = WORKLOADS / "stg"
WFCOMMONS = WORKLOADS / "wfcommons"

#: the search schedulers get a budget counted in schedules: fast and deterministic
SEARCH_EVALUATIONS = 100

#: the command line, as a user runs it
RLSCHED = [sys.executable, "-m", "rlsched"]


def simulate(instance, pool, scheduler="fifo", seed=0, perturbations=None):
    """Run one episode; return ``(SimResult, Metrics)``."""
    sched = make_scheduler(scheduler, search_evaluations=SEARCH_EVALUATIONS)
    result = run_episode(instance, pool, sched, seed, perturbations)
    return result, measure(result)


def check_schedule(pool, result, m):
    """Assert the invariants every schedule must keep."""
    table = result.table
    ok = [a for a in result.trace if a.ok]
    # every task ran to completion exactly once
    assert sorted(a.task for a in ok) == list(range(table.n_tasks))
    start = {a.task: a.start for a in ok}
    end = {a.task: a.end for a in ok}
    for t, ps in enumerate(table.parents):
        # precedence: no task starts before its parents end, or before its job arrives
        assert all(start[t] >= end[p] - 1e-9 for p in ps)
        assert start[t] >= table.jobs[table.job_of[t]].arrival - 1e-9
    # a gang ran on as many distinct devices as it takes, on one host unless hosts are linked
    for a in result.trace:
        if a.device >= 0:
            assert len(set(a.devices)) == len(a.devices) == table.gpus[a.task]
            if not pool.hosts_linked:
                assert len({pool.devices[d].host for d in a.devices}) == 1
    # no device is ever over its memory
    for d in pool.devices:
        runs = [a for a in result.trace if d.index in a.devices]
        for a in runs:
            here = sum(table.memory[b.task] for b in runs if b.start <= a.start < b.end)
            assert here <= d.model.memory_gib + 1e-9
    # and nothing beats the lower bounds
    assert m.makespan >= m.lower_bound - 1e-6
    assert m.avg_jct >= m.jct_lower_bound - 1e-6


def rlsched(*args, state=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``rlsched ARGS [--state STATE]`` in a fresh process, its output captured."""
    extra = [] if state is None else ["--state", str(state)]
    return subprocess.run([*RLSCHED, *map(str, args), *extra], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, one line on stderr holding every needle, and no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def store_rows(state: Path, tables=("jobs", "tasks", "attempts")) -> dict[str, list]:
    """Every row of the store's tables, to check that a refused command changed nothing."""
    db = sqlite3.connect(Path(state) / "rlsched.db")
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in tables}
    finally:
        db.close()


def wait_for(predicate: Callable[[], object], seconds: float = 60) -> bool:
    """Poll ``predicate`` until it holds (True) or ``seconds`` pass (False): a
    loaded machine is slow, so the deadline is generous and never the test's pace."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def tick_until_idle(daemon, seconds: float = 60) -> bool:
    """Run the daemon's rounds until nothing is left to run (True), or
    ``seconds`` pass (False); the caller closes it."""
    return wait_for(lambda: not daemon.tick(), seconds)


def python_source(module: str) -> ModuleType:
    """``module`` run from its Python source, compiled core or not: a test
    that spies on a function or method patches this one (a compiled
    module's calls do not go through the attributes a patch replaces, and a
    compiled class's methods cannot be replaced)."""
    import importlib
    import importlib.util

    loaded = importlib.import_module(module)
    if (loaded.__file__ or "").endswith(".py"):
        return loaded
    name = f"{module}_from_source"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, ROOT.joinpath(*module.split(".")).with_suffix(".py"))
        assert spec is not None and spec.loader is not None
        source = importlib.util.module_from_spec(spec)
        sys.modules[name] = source  # (its dataclasses look themselves up there)
        spec.loader.exec_module(source)
    return sys.modules[name]
