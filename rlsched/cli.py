"""The ``rlsched`` command line.

Every sub-command that loads user input turns an :class:`InputError` into one
line on stderr and exit code 2. Heavy imports (matplotlib, torch) happen
inside the sub-commands that need them, so ``rlsched --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlsched.errors import InputError

if TYPE_CHECKING:
    from rlsched.live.store import Store
    from rlsched.schedulers import Scheduler
    from rlsched.workload import Instance

#: fewer episodes than this and ``evaluate`` prints no paired interval
MIN_EPISODES_FOR_INTERVAL = 3

EXIT_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


EVALUATE_EPILOG = """\
workload SPECs:
  wfcommons:PATH            WfCommons WfFormat JSON file or directory (measured runtimes);
                            PATH?family=montage,blast keeps those families, ?exclude=... the rest
  stg:PATH                  Standard Task Graph Set .stg file or directory (with optima)
  jobs:PATH                 job-file YAML or directory (see the README)
  synthetic:NAME[?k=v&...]  generator: layered (tasks, width, regularity, density, jump),
                            pipeline (trainings), sweep (points), mixed, gangs (jobs of
                            1 to max_gpus GPUs at once); all take jobs=N
  trace:gavel:PATH          Gavel's deep-learning job traces of Microsoft's Philly cluster
                            (a .trace file or folder), each job's measured speed per GPU model
  history:STATE_DIR         the jobs your pool finished (rlsched serve's state), with the
                            runtimes they had: use --arrivals trace to replay them as they came
pool SPECs:
  identical:N[?model=M]     N devices of one model (default rtx-3090, the reference)
  preset:NAME               workstation-4 (A100-80GB, RTX 4090, 2x RTX 3090),
                            workstation-2, dgx-a100, lab-8, lab-kpv (V100, 2x P100,
                            3x K80), kpv-12 (4 of each)
  file:PATH                 a pool YAML file (see the README)
estimate models (what schedulers are told of runtimes; they never see the truth):
  default                   users' estimates as published traces show them: mostly
                            too long, twice the runtime at the median (noisy:1.0:0.69)
  noisy:SIGMA[:BIAS]        estimate = runtime * exp(BIAS + SIGMA * z), z ~ N(0, 1)
  none                      no estimates: only what finished tasks teach
  exact                     the true runtimes (a bound; STG studies)
  The runtime model blends each estimate with the history of finished tasks of
  the same kind. oracle:NAME runs heuristic NAME on the truth, as a bound.

examples:
  rlsched evaluate --workload stg:workloads/stg --pool identical:4 \\
      --scheduler fifo,cp,heft --json stg.json
  rlsched evaluate --workload wfcommons:workloads/wfcommons --pool preset:workstation-4 \\
      --scheduler fifo,sjf,heft --arrivals poisson --load 0.85 --perturb all \\
      --seeds 5 --seed-offset 1000 --workers 0 --plot results/
  rlsched evaluate --workload wfcommons:workloads/wfcommons --pool preset:workstation-4 \\
      --scheduler sjf,share,las,oracle:share --arrivals poisson --estimates none
  rlsched evaluate --workload wfcommons:workloads/wfcommons --workload synthetic:pipeline \\
      --pool preset:workstation-4 --arrivals poisson --perturb all --seeds 5 \\
      --seed-offset 2000 --scheduler fifo,sjf,tetris,heft,share,rl:default,oracle:share \\
      --holdout-report    # family by family: the policy on what it never trained on
"""


STATE_HELP = "state directory (default: $RLSCHED_STATE, else ~/.local/state/rlsched)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rlsched")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


class _VersionAction(argparse.Action):
    """``--version``, read from the package's metadata only when asked:
    every command would otherwise pay for importing it (serve's first start
    among them)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 help: str = "show the version and exit") -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"rlsched {_version()}")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, or of ``command`` alone where it names
    one (each sets ``run``, the function that runs it): ``serve``'s first
    start and every ``status`` would otherwise build some 120 options they
    never read (about 10 ms)."""
    p = _Parser(prog="rlsched", description="Learn to schedule DAG jobs on a GPU pool; "
                "evaluate schedulers in simulation; run one as the pool's live scheduler.")
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands = _commands()
    for add in [commands[command]] if command in commands else commands.values():
        add(sub)
    return p


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """``rlsched evaluate``: schedulers compared in the simulator."""
    ev = sub.add_parser(
        "evaluate", help="compare schedulers on workloads in the simulator",
        description="Run each scheduler on each workload instance and seed in the simulator; "
                    "print a table of means and ratios (to the lower bound, and to the best "
                    "scheduler of each episode); under it, a learned policy against the best "
                    "heuristic with a paired interval, and the best heuristic of each episode "
                    "chosen in hindsight (the ceiling of picking one heuristic per episode).",
        epilog=EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--workload", action="append", required=True, metavar="SPEC",
                    help="workload SPEC (repeatable)")
    ev.add_argument("--pool", required=True, metavar="SPEC", help="pool SPEC")
    ev.add_argument("--scheduler", default="fifo,sjf,cp,tetris,heft", metavar="NAME[,NAME...]",
                    help="schedulers to compare: random, fifo, sjf, cp, tetris, heft, share, "
                         "las (needs no runtimes), backfill, the searches ga and sa, rl:PATH for a "
                         "trained policy's checkpoint, and oracle:NAME, a bound: heuristic "
                         "NAME told the true runtimes (default: %(default)s)")
    ev.add_argument("--arrivals", choices=("batch", "poisson", "trace"), default="batch",
                    help="batch: every job at time 0, each instance on its own; poisson: all "
                         "jobs of a SPEC as one online stream; trace: each instance at its "
                         "own arrival times, as history: recorded them (default: %(default)s)")
    ev.add_argument("--load", type=float, default=0.85,
                    help="offered load for poisson arrivals, a fraction of the pool's capacity "
                         "(default: %(default)s)")
    ev.add_argument("--perturb", default="none", metavar="LIST",
                    help="none, all, or a comma list of throttle, external, failures "
                         "(default: %(default)s)")
    ev.add_argument("--estimates", default="default", metavar="MODEL",
                    help="what schedulers are told of runtimes: default, noisy:SIGMA[:BIAS], "
                         "none or exact (see below; default: %(default)s)")
    ev.add_argument("--seeds", type=int, default=1, help="number of seeds (default: 1)")
    ev.add_argument("--seed-offset", type=int, default=0, help="first seed (default: 0)")
    ev.add_argument("--search-budget", type=float, default=2.0, metavar="SECONDS",
                    help="wall-clock seconds per plan of the search schedulers ga and sa "
                         "(default: %(default)s)")
    ev.add_argument("--search-evaluations", type=int, metavar="N",
                    help="schedules evaluated per plan by ga and sa instead of a time budget: "
                         "deterministic under a seed")
    ev.add_argument("--workers", type=int, default=1, metavar="N",
                    help="run episodes in N processes (0: one per CPU); each episode is its "
                         "own, so the results are the same with any N (default: %(default)s)")
    ev.add_argument("--json", metavar="PATH", help="write every result and the summary as JSON")
    ev.add_argument("--plot", metavar="DIR", help="write gantt.png and comparison.png here "
                    "(and convergence.png for ga and sa)")
    ev.add_argument("--holdout-report", action="store_true",
                    help="the leave-family-out table: each family of the workloads (each "
                         "WfCommons family, each generator, STG, Gavel) evaluated on its own, "
                         "the one rl:PATH of --scheduler against the best other scheduler "
                         "there, with the paired interval; families its card says it trained "
                         "or was validated on are marked and left out of the mean (an "
                         "oracle:NAME among the schedulers adds the share of the gap to it the "
                         "policy closes)")
    ev.set_defaults(run=_evaluate)


def add_train(sub: argparse._SubParsersAction) -> None:
    """``rlsched train``: imitation, then MaskablePPO."""
    tr = sub.add_parser(
        "train", help="train a scheduling policy (imitation, then MaskablePPO)",
        description="Train a GNN (or MLP) policy with MaskablePPO on a simulated pool: "
                    "behaviour cloning of a teacher heuristic first, then PPO. Watch it with "
                    "'tensorboard --logdir runs'; checkpoints and their cards go to "
                    "checkpoints/NAME/ (best.zip is the best on validation).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  rlsched train --config configs/quick.yaml\n"
               "  rlsched train --config configs/default.yaml\n"
               "  rlsched train --config configs/default.yaml --resume "
               "checkpoints/default/latest.zip --steps 100000\n"
               "  rlsched train --config configs/exact-costs.yaml --resume "
               "checkpoints/v11.zip   # how the shipped policy was tuned\n"
               "  rlsched train --config configs/default.yaml --validate "
               "rl:default,rl:checkpoints/default/best.zip,share --validation-seeds 600-607")
    tr.add_argument("--config", required=True, metavar="PATH", help="YAML training config")
    tr.add_argument("--resume", metavar="CHECKPOINT",
                    help="go on from this checkpoint's weights (no cloning: the config's "
                         "PPO steps and anchoring round run from them); the new cards name "
                         "it as resumed_from")
    tr.add_argument("--steps", type=int, help="override total_steps")
    tr.add_argument("--seed", type=int, help="override the seed")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--validate", metavar="LIST",
                    help="train nothing: validate these schedulers (rl:PATH checkpoints, "
                         "heuristics) as training validates, on the config's validation kinds, "
                         "and print each one's ratio to the best heuristic, kind by kind, as "
                         "JSON. Use --validation-seeds to compare checkpoints on seeds that "
                         "did not choose them")
    tr.add_argument("--validation-seeds", metavar="LIST",
                    help="with --validate: seeds instead of the config's validation_seeds, "
                         "as 600,601 or 600-607")
    tr.set_defaults(run=_train)


def add_submit(sub: argparse._SubParsersAction) -> None:
    """``rlsched submit``: job files into the durable queue."""
    sb = sub.add_parser("submit", help="queue job files for the live scheduler",
                        description="Validate job files and store them in the durable queue, "
                                    "in one transaction; works whether or not 'serve' runs.")
    sb.add_argument("files", nargs="+", metavar="FILE", help="job-file YAML (see the README)")
    sb.add_argument("--state", metavar="DIR", help=STATE_HELP)
    sb.set_defaults(run=_submit)


def add_status(sub: argparse._SubParsersAction) -> None:
    """``rlsched status``: the queue, its tasks and devices."""
    st = sub.add_parser("status", help="jobs and tasks in the queue",
                        description="The queue: every job with its state and JCT, every task "
                                    "with its state, GPU and attempts (and why it failed, was "
                                    "skipped or cannot be placed), and the devices as serve last "
                                    "saw them.")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--state", metavar="DIR", help=STATE_HELP)
    st.set_defaults(run=_status)


def add_export(sub: argparse._SubParsersAction) -> None:
    """``rlsched export``: the pool's finished jobs as a job file."""
    ex = sub.add_parser(
        "export", help="write the jobs your pool finished as a job file with their runtimes",
        description="Write the finished jobs of the state (what 'history:STATE_DIR' replays) "
                    "as one job-file YAML: each task with the estimate it was submitted with "
                    "and 'runtime:', the seconds it took times its GPU's speed (its runtime on "
                    "the reference GPU). 'jobs:FILE' replays it anywhere, without the "
                    "database.",
        epilog="example:\n  rlsched export --out my-month.yaml\n"
               "  rlsched evaluate --workload jobs:my-month.yaml --arrivals trace "
               "--pool preset:workstation-4 --scheduler fifo,sjf,share",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("--out", required=True, metavar="FILE", help="the YAML file to write")
    ex.add_argument("--state", metavar="DIR", help=STATE_HELP)
    ex.set_defaults(run=_export)


def add_logs(sub: argparse._SubParsersAction) -> None:
    """``rlsched logs``: a task's output."""
    lg = sub.add_parser("logs", help="output of a task's latest attempt",
                        description="Print the output (stdout and stderr together) of a task's "
                                    "latest attempt, running or ended; --follow keeps printing "
                                    "as it writes, until it ends.")
    lg.add_argument("task", metavar="TASK", help="JOB/TASK, or TASK if only one job has it")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    lg.add_argument("--state", metavar="DIR", help=STATE_HELP)
    lg.set_defaults(run=_logs_command)


def add_cancel(sub: argparse._SubParsersAction) -> None:
    """``rlsched cancel``: a job's unfinished tasks."""
    ca = sub.add_parser("cancel", help="cancel a job (running tasks are killed by serve)",
                        description="Cancel a job: its tasks not yet ended never start, and "
                                    "serve kills those running (at once if it runs, else when "
                                    "it next starts). 'rlsched purge JOB' then removes it.")
    ca.add_argument("job", metavar="JOB", help="the job's name")
    ca.add_argument("--state", metavar="DIR", help=STATE_HELP)
    ca.set_defaults(run=_cancel)


def add_purge(sub: argparse._SubParsersAction) -> None:
    """``rlsched purge``: an ended job out of the queue, so its name is free."""
    pu = sub.add_parser("purge", help="remove an ended job (done, failed, cancelled) and its logs",
                        description="Remove a job that has ended (done, failed or cancelled): "
                                    "its tasks, attempts and log files. Its name can then be "
                                    "submitted again. The store's event log keeps a record of "
                                    "it. A job with work left must be cancelled first.")
    pu.add_argument("job", metavar="JOB", help="the job's name")
    pu.add_argument("--state", metavar="DIR", help=STATE_HELP)
    pu.set_defaults(run=_purge)


def add_drain(sub: argparse._SubParsersAction) -> None:
    """``rlsched drain``: no new starts on a GPU, or on the pool."""
    dr = sub.add_parser("drain", help="start nothing new on a GPU (or the pool); running tasks finish",
                        description="Drain a GPU, or with no --gpu the whole pool, for "
                                    "maintenance: serve starts nothing new there, and what runs "
                                    "there finishes. It lasts, across restarts of serve, until "
                                    "'rlsched resume'. 'rlsched status' shows drained GPUs.")
    dr.add_argument("--gpu", type=int, metavar="K", help="the GPU (as status lists it)")
    dr.add_argument("--state", metavar="DIR", help=STATE_HELP)
    dr.set_defaults(run=_drain)


def add_resume(sub: argparse._SubParsersAction) -> None:
    """``rlsched resume``: the end of a drain."""
    re_ = sub.add_parser("resume", help="end a drain: the GPU (or every drained one) takes work again",
                         description="End the drain of a GPU, or with no --gpu every drain.")
    re_.add_argument("--gpu", type=int, metavar="K", help="the GPU (as status lists it)")
    re_.add_argument("--state", metavar="DIR", help=STATE_HELP)
    re_.set_defaults(run=_resume)


def add_serve(sub: argparse._SubParsersAction) -> None:
    """``rlsched serve``: the live scheduler."""
    sv = sub.add_parser(
        "serve", help="run the live scheduler on local GPUs (or a fake pool)",
        description="Start the scheduler daemon: it picks up submitted jobs from the store, "
                    "asks the scheduler where each ready task goes, and runs it as a process "
                    "with CUDA_VISIBLE_DEVICES set to its GPU.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="pools: local (NVML), fake:N (N simulated GPUs; tasks still run for real), "
               "identical:N[?model=M], preset:NAME, file:PATH\nexample:\n"
               "  rlsched serve --pool fake:4 &\n  rlsched submit examples/jobs/train-eval.yaml\n"
               "  rlsched status\n"
               "on a Ray cluster (each node started with gpu_slot_K resources, see the README):\n"
               "  rlsched serve --backend ray --address auto")
    sv.add_argument("--pool", default="local", metavar="SPEC",
                    help="local | fake:N | identical:N | preset:NAME | file:PATH (default: local)")
    sv.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="where tasks run: this machine, or a Ray cluster's nodes (needs "
                         "pip install 'rlsched[ray]'; see the README) (default: local)")
    sv.add_argument("--address", metavar="ADDR",
                    help="with --backend ray: auto, or HOST:PORT of the cluster's head "
                         "(default: start Ray on this machine with its GPUs, or fake:N)")
    sv.add_argument("--scheduler", default="share", metavar="NAME",
                    help="random, fifo, sjf, cp, tetris, heft, share, las, backfill, ga, sa, "
                         "or rl:PATH (a trained policy; rl:default is the shipped one). The "
                         "default, share, "
                         "finishes jobs soonest on average of the heuristics (see the README)")
    sv.add_argument("--state", metavar="DIR", help=STATE_HELP)
    sv.add_argument("--metrics-port", type=int, metavar="P",
                    help="serve Prometheus metrics on 127.0.0.1:P/metrics")
    sv.add_argument("--tick", type=float, default=0.2, metavar="SECONDS",
                    help="the longest wait between rounds; a task's exit or a submit wakes "
                         "serve sooner (default: %(default)s)")
    sv.add_argument("--exit-when-idle", action="store_true",
                    help="stop once nothing is queued or running (for scripts and tests)")
    sv.set_defaults(run=_serve)


def add_ray_flags(sub: argparse._SubParsersAction) -> None:
    """``rlsched ray-flags``: what ``ray start`` needs to pin tasks to GPUs."""
    rf = sub.add_parser(
        "ray-flags", help="the 'ray start' flags that let serve --backend ray pin tasks to GPUs",
        description="Print --num-gpus and one gpu_slot_K resource per GPU of this machine, for "
                    "'ray start': serve --backend ray pins each task to its GPU through them.",
        epilog="example:\n  ray start --head $(rlsched ray-flags)\n"
               "  ray start --address HEAD_IP:6379 $(rlsched ray-flags)   # on each other node",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rf.add_argument("--gpus", type=int, metavar="N",
                    help="this many GPUs instead of those NVML sees (a node without a driver)")
    rf.set_defaults(run=_ray_flags)


def add_bench(sub: argparse._SubParsersAction) -> None:
    """``rlsched bench``: benchmarks that print JSON, one sub-command each."""
    bench = sub.add_parser("bench", help="benchmarks that print JSON",
                           description="Measure speed; print one JSON object.")
    bsub = bench.add_subparsers(dest="what", required=True, parser_class=_Parser)
    for add in (add_bench_sim, add_bench_search, add_bench_serve, add_bench_policy,
                add_bench_headroom, add_bench_env, add_bench_estimates, add_bench_all,
                add_bench_peers, add_bench_scale):
        add(bsub)


def add_bench_all(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench all``."""
    ba = bsub.add_parser(
        "all", help="every speed benchmark at its defaults, as one JSON document",
        description="Run sim, search, serve, policy and env at their defaults and print one "
                    "JSON object with each one's output under its name (headroom is a study of "
                    "minutes, not a speed benchmark, and is left out). About half a minute.")
    ba.add_argument("--quick", action="store_true",
                    help="small sizes, for a smoke test (seconds; the numbers mean little)")
    ba.add_argument("--checkpoint", default="checkpoints/default.zip",
                    help="the policy bench policy times (default: %(default)s)")
    ba.set_defaults(run=_bench_all)


def add_bench_scale(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench scale`` (its defaults are written out here: importing the
    benchmark would slow every command's start)."""
    bs = bsub.add_parser(
        "scale", help="how a decision's cost grows with the queue and the pool",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Decisions (placements) per CPU-second and per second of every heuristic\n"
                    "and of the learned policy, over batch workloads of TASKS layered tasks (100\n"
                    "per job) on identical:DEVICES pools, each cell under a time limit (a cell\n"
                    "that hits it is recorded as such, and the bigger cells of that scheduler\n"
                    "and pool are skipped; a cell under --min-time is run again, up to five\n"
                    "times, and its median run kept). Prints one JSON document, with each\n"
                    "scheduler's growth exponent (the slope of log CPU time against log\n"
                    "tasks: 1 means a decision costs the same at every queue length) and the\n"
                    "ratios of its rates between the smallest and biggest cells. The full\n"
                    "grid takes up to an hour; progress goes to stderr.",
        epilog="examples:\n  rlsched bench scale --json scale.json --plot results/\n"
               "  rlsched bench scale --schedulers share,heft --tasks 1000,16000 --devices 8")
    bs.add_argument("--schedulers", default=None, metavar="LIST",
                    help="comma list (default: every heuristic and rl:checkpoints/default.zip)")
    bs.add_argument("--tasks", default="1000,4000,16000,64000", metavar="LIST",
                    help="task counts (default: %(default)s)")
    bs.add_argument("--devices", default="8,64,512", metavar="LIST",
                    help="pool sizes (default: %(default)s)")
    bs.add_argument("--limit", type=float, default=120.0, metavar="S",
                    help="seconds per cell before it is stopped (default: %(default)s)")
    bs.add_argument("--min-time", type=float, default=1.0, metavar="S",
                    help="a cell that took less is run again, up to five times, and its "
                         "median run kept (default: %(default)s)")
    bs.add_argument("--seed", type=int, default=0,
                    help="seeds the workloads and the estimates (default: %(default)s)")
    bs.add_argument("--estimates", default="default", metavar="MODEL",
                    help="estimate model, as for evaluate (default: %(default)s)")
    bs.add_argument("--json", type=Path, default=None, metavar="FILE",
                    help="also write the JSON document here")
    bs.add_argument("--plot", type=Path, default=None, metavar="DIR",
                    help="write scale.png (CPU time against tasks, log-log) here")
    bs.add_argument("--markdown", action="store_true",
                    help="print the table (thousands of decisions per CPU-second per "
                         "cell), not JSON")
    bs.set_defaults(run=_bench_scale)


def add_bench_sim(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench sim``."""
    bs = bsub.add_parser(
        "sim", help="simulator decisions per second with fifo and heft",
        description="Placements per second (wall clock and CPU time) of the simulator driven "
                    "by fifo and by heft: one batch of layered jobs, the best of --repeats "
                    "runs. Prints one JSON object.")
    bs.add_argument("--tasks", type=int, default=1000,
                    help="tasks, in 10 layered jobs (default: %(default)s)")
    bs.add_argument("--devices", type=int, default=8,
                    help="GPUs: the mixed lab-8 preset for 8, identical ones otherwise "
                         "(default: %(default)s)")
    bs.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    bs.add_argument("--estimates", default="default", metavar="MODEL",
                    help="estimate model, as for evaluate (default: %(default)s)")
    bs.add_argument("--repeats", type=int, default=3,
                    help="runs per scheduler; the best counts (default: %(default)s)")
    bs.set_defaults(run=_bench_sim)


def add_bench_search(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench search``."""
    bq = bsub.add_parser("search", help="schedules evaluated per second by the search decoder")
    bq.add_argument("--seconds", type=float, default=2.0)
    bq.add_argument("--seed", type=int, default=0)
    bq.set_defaults(run=_bench_search)


def add_bench_serve(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench serve``."""
    bv = bsub.add_parser(
        "serve", help="live daemon: ready-to-start latency, tasks per second",
        description="Run the live daemon on a fake pool over tiny tasks (true) in chains of "
                    "five, all queued at its start, with a 2 ms tick; print the median and "
                    "p99 time from a task being able to start (its parent done, a GPU free) "
                    "to its process starting, and tasks per second, as one JSON object.")
    bv.add_argument("--tasks", type=int, default=500, help="(default: %(default)s)")
    bv.add_argument("--devices", type=int, default=4,
                    help="GPUs of the fake pool (default: %(default)s)")
    bv.add_argument("--scheduler", default="heft",
                    help="any scheduler serve takes (default: %(default)s, as every figure "
                         "of this benchmark so far)")
    bv.add_argument("--history", type=int, default=0, metavar="N",
                    help="finished jobs already in the store (a long-running daemon's past)")
    bv.set_defaults(run=_bench_serve)


def add_bench_peers(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench peers`` (its names are written out here: importing the
    benchmark would slow every command's start, serve's among them)."""
    bp = bsub.add_parser(
        "peers", help="rlsched serve against task-spooler and simple_gpu_scheduler, live (minutes)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The same seeded streams of stub jobs, live, through task-spooler (tsp),\n"
                    "simple_gpu_scheduler and rlsched serve, each from a fresh state with every\n"
                    "job queued at its start. A stub sleeps its work divided by the speed of the\n"
                    "GPU it was given (CUDA_VISIBLE_DEVICES), so placement matters as on real\n"
                    "cards. Peers run plain and fed in estimate order; peers not installed are\n"
                    "left out (apt-get install task-spooler; pip install 'rlsched[peers]').\n"
                    "Each cell also gets the ideal: a schedule with the true runtimes and no\n"
                    "dispatch cost (least remaining work first, each task where it finishes\n"
                    "first): a clairvoyant reference, not a proven optimum.\n"
                    "Prints a table, and JSON to --json; --plot DIR draws average JCT per cell.\n"
                    "pools: fake:4, mixed; streams: independent, pipelines, repeats;\n"
                    "estimates: noisy, none",
        epilog="examples:\n  rlsched bench peers --json peers.json --plot results/\n"
               "  rlsched bench peers --cell fake:4,independent,noisy --schedulers share,fifo")
    bp.add_argument("--cell", action="append", metavar="POOL,STREAM,ESTIMATES",
                    help="a cell to run (repeatable; default: fake:4 independent and pipelines "
                         "with noisy estimates, mixed repeats with noisy and with none)")
    bp.add_argument("--schedulers", metavar="NAME[,NAME...]",
                    help="rlsched schedulers; the first is the one compared (default: share, "
                         "serve's default, then sjf, fifo, heft, tetris)")
    bp.add_argument("--seeds", type=int, default=1,
                    help="streams per cell, each from its own seed (default: %(default)s)")
    bp.add_argument("--seed-offset", type=int, default=1,
                    help="the first seed (default: %(default)s)")
    bp.add_argument("--scale", type=float, default=1.0,
                    help="multiply every stub's work by this (default: %(default)s)")
    bp.add_argument("--json", type=Path, metavar="PATH", help="write the JSON document here")
    bp.add_argument("--plot", type=Path, metavar="DIR", help="write peers.png (and peers.json) here")
    bp.set_defaults(run=_bench_peers)


def add_bench_policy(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench policy``."""
    bp = bsub.add_parser(
        "policy", help="decision latency of a policy driving a 100-task episode on 8 GPUs",
        description="Milliseconds per decide() of a checkpoint as it schedules a 100-task "
        "layered workload on the lab-8 pool (default estimates): median and p99 over the "
        "first --decisions calls of the episodes it drives, and cold_median_ms, the first "
        "decision of an episode, where nothing is cached yet.")
    bp.add_argument("--checkpoint", default="checkpoints/default.zip",
                    help="a checkpoint saved by rlsched train (default: %(default)s)")
    bp.add_argument("--decisions", type=int, default=300,
                    help="calls to time (default: %(default)s)")
    bp.set_defaults(run=_bench_policy)


def add_bench_headroom(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench headroom``."""
    bh = bsub.add_parser(
        "headroom", help="what one-step lookahead with foresight gains over a heuristic (slow)",
        description="Per online episode, the average JCT of BASE and of a one-step lookahead\n"
                    "over it that knows the future: at each decision it tries BASE's, heft's,\n"
                    "cp's, tetris's and sjf's next placement, and waiting, plays each out with\n"
                    "BASE on a copy of the episode (same arrivals, same perturbations), and\n"
                    "keeps the best. Its ratio to BASE is an optimistic bound on what a policy\n"
                    "that cannot see the future may gain over BASE by deviating from it.\n"
                    "With --futures K the lookahead cannot see the future either: each\n"
                    "play-out knows only the jobs already arrived and faces perturbations\n"
                    "drawn anew, and a candidate scores its mean over K such play-outs.\n"
                    "Slow: minutes per episode (times K).",
        epilog="example:\n  rlsched bench headroom --seed-offset 1000 --seeds 5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    bh.add_argument("--workload", default="wfcommons:workloads/wfcommons")
    bh.add_argument("--pool", default="preset:workstation-4")
    bh.add_argument("--seeds", type=int, default=2)
    bh.add_argument("--seed-offset", type=int, default=1000)
    bh.add_argument("--load", type=float, default=0.85)
    bh.add_argument("--perturb", default="all")
    bh.add_argument("--base", default="share", help="a heuristic's name (default: share)")
    bh.add_argument("--futures", type=int, default=0, metavar="K",
                    help="plan on K drawn futures instead of the episode's own (default 0: "
                         "hindsight)")
    bh.add_argument("--margin", type=float, default=0.0, metavar="F",
                    help="depart from BASE only where another candidate's play-out is better "
                         "by more than this fraction (default 0)")
    bh.set_defaults(run=_bench_headroom)


def add_bench_estimates(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench estimates``."""
    be = bsub.add_parser(
        "estimates", help="average JCT of every heuristic against estimate error (minutes)",
        description="Run every heuristic, the searches and oracle:share on the online\n"
                    "benchmark three times: told the exact runtimes, the default estimates,\n"
                    "and nothing (history only). Prints JSON, or with --markdown the table\n"
                    "the README shows. About ten minutes on two cores.",
        epilog="example:\n  rlsched bench estimates --markdown",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    be.add_argument("--workload", default="wfcommons:workloads/wfcommons")
    be.add_argument("--pool", default="preset:workstation-4")
    be.add_argument("--seeds", type=int, default=5)
    be.add_argument("--seed-offset", type=int, default=1000)
    be.add_argument("--scheduler", metavar="NAME[,NAME...]",
                    help="schedulers (default: every heuristic, ga, sa and oracle:share)")
    be.add_argument("--markdown", action="store_true", help="print the table, not JSON")
    be.set_defaults(run=_bench_estimates)


def add_bench_env(bsub: argparse._SubParsersAction) -> None:
    """``rlsched bench env``."""
    be = bsub.add_parser("env", help="environment steps per second with random masked actions")
    be.add_argument("--episodes", type=int, default=5)
    be.add_argument("--seed", type=int, default=0)
    be.add_argument("--repeats", type=int, default=3)
    be.set_defaults(run=_bench_env)


def _register_history() -> None:
    """``history:STATE_DIR`` for the commands that resolve workloads: the
    live store's replay, which the simulator's side of the core may not import."""
    from rlsched.sources.specs import WORKLOAD_PREFIXES

    def history(rest: str, spec: str):
        from rlsched.live.replay import history_source

        return history_source(rest, spec)

    WORKLOAD_PREFIXES.setdefault("history", history)


def _commands() -> dict[str, Callable[[argparse._SubParsersAction], None]]:
    """Each sub-command's name and the function that adds its parser, in
    the order ``--help`` lists them."""
    return {"evaluate": add_evaluate, "train": add_train, "submit": add_submit,
            "status": add_status, "logs": add_logs, "cancel": add_cancel, "purge": add_purge,
            "drain": add_drain, "resume": add_resume, "export": add_export, "serve": add_serve,
            "ray-flags": add_ray_flags, "bench": add_bench}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the sub-command is the first word that is not an option (the top level has
    # only --version and --help, which take no value)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    if args.command in ("evaluate", "train", "bench"):
        _register_history()
    try:
        return args.run(args)
    except InputError as e:
        one_line = " ".join(str(e).splitlines())  # whatever the input held
        print(f"rlsched: error: {one_line}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:  # the reader (head, less) went away: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:  # Ctrl-C in logs --follow, a long evaluate: no traceback
        return 130


def _serve(args: argparse.Namespace) -> int:
    from rlsched.live.backends import open_backend
    from rlsched.live.daemon import Daemon
    from rlsched.live.serve_lock import ServeLock
    from rlsched.live.store import Store

    _uses_rl([args.scheduler])
    if args.address and args.backend != "ray":
        raise InputError("--address", "only means something with --backend ray")
    Daemon.refuse_bounds(args.scheduler)  # before the state is touched
    store = Store(args.state)
    lock = ServeLock(store.dir)  # before the backend: a second serve starts nothing
    backend = open_backend(args.backend, args.pool, args.address)
    try:
        daemon = Daemon(store, args.pool, args.scheduler, backend, lock)
        if args.metrics_port:  # before the banner: a port in use is the one line printed
            from rlsched.live.prometheus import serve_metrics

            serve_metrics(daemon, args.metrics_port)
        hosts = sorted({d.host for d in daemon.live})
        where = args.backend if args.backend == "ray" else f"local, --pool {args.pool}"
        print(f"rlsched serve: {len(daemon.pool)} GPU(s) "
              f"[{_models_in_runs([d.model.name for d in daemon.pool.devices])}] on "
              f"{len(hosts)} machine(s) ({where}), scheduler "
              f"{args.scheduler}, state {daemon.store.dir}", file=sys.stderr, flush=True)
        daemon.run(args.tick, args.exit_when_idle)
        _say_who_decided(daemon.scheduler)
    except KeyboardInterrupt:
        pass
    finally:
        backend.close()
        lock.release()
    return 0


def _models_in_runs(models: list[str]) -> str:
    """``a100-80gb, rtx-4090, 2× rtx-3090``: the pool's models in order, a run
    of one model counted (a pool of thousands stays one short line)."""
    from itertools import groupby

    runs = [(m, len(list(run))) for m, run in groupby(models)]
    return ", ".join(f"{n}× {m}" if n > 1 else m for m, n in runs)


def _say_who_decided(scheduler: Scheduler) -> None:
    """At the end of ``serve``: how many decisions a slow-to-load scheduler
    left to its fallback, so a short run is not taken for the policy's."""
    from rlsched.live.warm_start import WarmStart

    if isinstance(scheduler, WarmStart) and scheduler.fallback_decisions:
        loaded = f"loaded in {scheduler.load_s:.1f} s" if scheduler.load_s is not None \
            else "had not loaded"
        print(f"rlsched serve: {scheduler.name} {loaded}; {scheduler.fallback.name} made "
              f"{scheduler.fallback_decisions} of the {scheduler.decisions} decisions",
              file=sys.stderr)


def _ray_flags(args: argparse.Namespace) -> int:
    from rlsched.live.telemetry import NvmlSource, NvmlUnavailable

    n = args.gpus
    if n is None:
        try:
            source = NvmlSource()
        except NvmlUnavailable:
            raise InputError("ray-flags", "no NVIDIA driver here to count GPUs; give their "
                             "number with --gpus N") from None
        n = len(source.devices)
        source.close()
    if n < 0:
        raise InputError("--gpus", f"a number of GPUs is 0 or more, not {n}")
    slots = ",".join(f'"gpu_slot_{k}":1' for k in range(n))
    print(f"--num-gpus={n} --resources={{{slots}}}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from rlsched.live.store import Store
    from rlsched.live.wakeup import notify
    from rlsched.sources.jobfile import load_jobfile
    from rlsched.workload import validate_fits, validate_gangs, validate_placement

    # validate every file before the store is touched: all or nothing
    instances = [load_jobfile(f, require_work=False) for f in args.files]
    _check_runnable(args.files, instances)
    store = Store(args.state)
    pool = store.known_pool()
    if pool is not None:  # serve has run here: a task no GPU of its pool takes waits forever
        for instance in instances:
            validate_fits(instance, pool.max_memory, pool.name)
            validate_placement(instance, pool)
            validate_gangs(instance, pool)
    for name in store.submit(instances):
        print(f"submitted {name}")
    notify(store.dir)
    return 0


def _check_runnable(files: list[str], instances: list[Instance]) -> None:
    """What a job file for ``evaluate`` may do but one for the live queue may
    not: leave a task without a command (serve would have nothing to run),
    or name one job twice in one submit (the same file given twice, say)."""
    first: dict[str, tuple[str, Path]] = {}  # job -> the file it came from, and that resolved
    for path, instance in zip(files, instances):
        here = Path(path).resolve()
        for job in instance.jobs:
            for task in job.tasks:
                if task.command is None:
                    raise InputError(path, f"job '{job.name}' task '{task.id}' has no command: "
                                     "serve would have nothing to run (only a job file for "
                                     "evaluate may leave it out)")
            if job.name in first:
                other, resolved = first[job.name]
                if resolved == here:
                    raise InputError(path, f"given twice in this submit: job '{job.name}' "
                                     "would be queued twice")
                raise InputError(path, f"job '{job.name}' is in {other} too: each job of one "
                                 "submit needs a name of its own")
            first[job.name] = path, here


def _export(args: argparse.Namespace) -> int:
    import yaml

    from rlsched.live.replay import as_jobfile, load_history
    from rlsched.live.store import Store

    state = Store(args.state, create=False).dir  # the default state where none is given
    instance = load_history(state)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(as_jobfile(instance), sort_keys=False))
    except OSError as e:
        raise InputError(str(out), f"cannot write ({e.strerror})") from None
    print(f"wrote {len(instance.jobs)} finished job(s) to {out}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from rlsched.live.history import add_predictions
    from rlsched.live.store import Store

    store = Store(args.state, create=False)
    status = store.status()
    add_predictions(store, status)
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        _print_status(status)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from rlsched.live.store import Store
    from rlsched.live.wakeup import notify

    store = Store(args.state, create=False)
    n = store.cancel(args.job)
    notify(store.dir)
    if n is None:
        print(f"{args.job} has already ended: nothing to cancel (rlsched purge {args.job} "
              "removes it)")
    else:
        print(f"cancelled {args.job} ({n} task(s))")
        _say_when_killed(store)
    return 0


def _say_when_killed(store: Store) -> None:
    """After a cancel: with no serve running, a cancelled task's process goes
    on until serve next runs and kills it; say so rather than let it look dead."""
    from rlsched.live.lifecycle import TaskStatus
    from rlsched.live.serve_lock import serve_holder

    running = sum(a.task_status == TaskStatus.CANCELLED for a in store.open_attempts())
    if running and serve_holder(store.dir) is None:
        print(f"no serve is running here: {running} cancelled task(s) still running are "
              "killed when serve next starts")


def _drain(args: argparse.Namespace) -> int:
    from rlsched.live.store import Store
    from rlsched.live.wakeup import notify

    if args.gpu is not None and args.gpu < 0:
        raise InputError("--gpu", f"a GPU is 0 or more, not {args.gpu}")
    store = Store(args.state, create=False)  # a typo in --state is not a new, drained store
    pool = store.known_pool()
    if args.gpu is not None and pool is not None and args.gpu not in {d.index for d in pool.devices}:
        raise InputError("--gpu", f"serve's pool has no GPU {args.gpu} (its GPUs: "
                         f"{', '.join(str(d.index) for d in pool.devices)})")
    store.drain(args.gpu)
    notify(store.dir)
    where = "the whole pool" if args.gpu is None else f"GPU {args.gpu}"
    print(f"drained {where}: nothing new starts there until 'rlsched resume'; running tasks "
          "finish")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from rlsched.live.store import Store
    from rlsched.live.wakeup import notify

    store = Store(args.state, create=False)
    n = store.resume(args.gpu)
    notify(store.dir)
    where = "every drain" if args.gpu is None else f"GPU {args.gpu}"
    print(f"resumed {where} ({n} drain(s) ended)" if n else f"{where}: nothing was drained")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from rlsched.live.store import Store

    store = Store(args.state, create=False)
    removed = store.purge(args.job)
    for attempt in removed:  # its logs and exit files; named by attempt id
        for path in (store.dir / "logs").glob(f"attempt-{attempt}.*"):
            path.unlink(missing_ok=True)
    print(f"purged {args.job} ({len(removed)} attempt(s) and their logs); the name is free")
    return 0


def _logs_command(args: argparse.Namespace) -> int:
    from rlsched.live.store import Store

    _logs(Store(args.state, create=False), args.task, args.follow)
    return 0


def _logs(store, name: str, follow: bool) -> None:
    import time

    task = store.find_task(name)
    if task is None:
        job = store.job_tasks(name)
        if job is not None:
            raise InputError(name, f"is a job: name one of its tasks, as {name}/TASK "
                             f"(its tasks: {', '.join(job)})")
        raise InputError(name, "no such task in the queue (see rlsched status)")
    attempt = store.latest_attempt(task)
    if attempt is None and follow:  # wait for it to start, as tail -F waits for a file
        waiting = False
        while attempt is None:
            if store.task_status(task) not in ("queued", "running"):
                raise InputError(name, f"it will not start: it is {store.task_status(task)}")
            if not waiting:
                print(f"rlsched: {name} has not started yet; waiting for it (Ctrl-C to stop)",
                      file=sys.stderr, flush=True)
                waiting = True
            time.sleep(0.5)
            attempt = store.latest_attempt(task)
    if attempt is None:
        raise InputError(name, "no attempt of this task yet: it has not started (see rlsched "
                         "status, or wait for it with --follow)")
    offset = 0
    while True:
        try:
            with open(attempt["log"] or "", "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:  # not created yet, or the attempt never started
            chunk = b""
        offset += len(chunk)
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()
        attempt = store.latest_attempt(task, attempt["id"])
        if not follow or attempt["ended"] is not None:
            if offset == 0 and attempt["error"]:
                print(f"rlsched: {attempt['error']}", file=sys.stderr)
            return
        time.sleep(0.5)


def _maybe_duration(seconds: float | None) -> str:
    return "" if seconds is None else _duration(seconds)


def _print_status(status: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text  # names and reasons are shown as written, never as markup

    # piped into a file or a test, lines are not cut at 80 columns
    console = Console() if Console().is_terminal else Console(width=160)
    table = Table(title="rlsched queue", title_justify="left")
    reasons = any(t["reason"] for j in status["jobs"] for t in j["tasks"])
    for col in ("job", "state", "JCT", "task", "task state", "device", "attempts", "estimate",
                "predicted", "from", "runtime") + (("reason",) if reasons else ()):
        table.add_column(col, justify="right" if col in ("estimate", "predicted", "runtime")
                         else "left")
    for job in status["jobs"]:
        jct = "" if job["jct_s"] is None else _duration(job["jct_s"])
        for i, t in enumerate(job["tasks"]):
            row = [Text(job["name"]) if i == 0 else "", job["state"] if i == 0 else "",
                   jct if i == 0 else "", Text(t["id"]), t["state"],
                   ",".join(map(str, sorted(t.get("devices") or []))), str(t["attempts"]),
                   _maybe_duration(t["estimate_s"]), _maybe_duration(t.get("predicted_s")),
                   t.get("predicted_from") or "", _maybe_duration(t["runtime_s"])]
            if reasons:
                row.append(Text(t["reason"] or ""))
            table.add_row(*row)
    if status["jobs"]:
        console.print(table)
    else:
        console.print("rlsched queue: no jobs (rlsched submit FILE adds some)")
    for job in status["jobs"]:  # why each failed task failed, with the end of its log
        for t in job["tasks"]:
            if t["state"] == "failed":
                console.print(Text(f"{job['name']}/{t['id']} failed: {t['reason']}", style="bold"))
                for line in t.get("log_tail") or []:
                    console.print(Text(f"    {line}"))
    for m in status.get("misplaced", []):
        console.print(Text(f"warning: {m['job']}/{m['task']} was given GPU {m['given']} but NVML "
                           f"saw its process {m['pid']} on GPU {m['seen']}", style="bold red"))
    jcts = [j["jct_s"] for j in status["jobs"] if j["jct_s"] is not None]
    if jcts:
        console.print(f"{len(jcts)} job(s) done, average JCT {_duration(sum(jcts) / len(jcts))}"
                      " (submitted to last task done)")
    if status.get("devices"):
        running = status.get("serve_pid")
        dev = Table(title="devices (latest sample from serve" + (
            f", running as pid {running})" if running else "; serve is not running now)"),
            title_justify="left")
        for col in ("gpu", "name", "util", "memory", "temp", "power", "tasks", "healthy",
                    "drained"):
            dev.add_column(col)
        for d in status["devices"]:
            dev.add_row(str(d["idx"]), d["name"], f"{100 * d['utilization']:.0f}%",
                        f"{d['memory_used']:.1f}/{d['memory_total']:.0f} GiB",
                        f"{d['temperature_c']:.0f} C", f"{d['power_w']:.0f} W", str(d["tasks"]),
                        "yes" if d["healthy"] else "NO", "DRAINED" if d.get("drained") else "")
        console.print(dev)


def _duration(seconds: float) -> str:
    """``42.0 s``, ``3m 05s``, ``2h 07m``: as precise as a person reads it."""
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)  # 299.99999999999994 s is 5m 00s, not 4m 59s
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _uses_rl(specs: list[str]) -> None:
    """Register the ``rl:`` prefix (and import torch) only when asked for."""
    if any(s.startswith("rl:") for s in specs):
        import agents  # noqa: F401


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from agents.train import TrainConfig, train

    cfg = TrainConfig.from_yaml(args.config)
    if args.validation_seeds is not None:
        if args.validate is None:
            raise InputError("--validation-seeds", "is for --validate (training validates on "
                             "the config's validation_seeds)")
        cfg = replace(cfg, validation_seeds=_seed_list(args.validation_seeds))
    if args.validate is not None:
        from agents.train import validate_schedulers
        from rlsched.schedulers import make_scheduler

        names = [s.strip() for s in args.validate.split(",") if s.strip()]
        if not names:
            raise InputError("--validate", "name at least one scheduler or rl:PATH checkpoint")
        _uses_rl(names)
        try:  # every name checked (and every checkpoint loaded) before the episodes
            schedulers = {n: make_scheduler(n) for n in names}
        except InputError as e:
            if e.source != "--scheduler":
                raise
            raise InputError("--validate", e.problem) from None
        seeds = ", ".join(map(str, cfg.validation_seeds))
        print(f"validating {len(names)} scheduler(s) on {len(cfg.validation_episode_kinds())} "
              f"kind(s), seeds {seeds} (the heuristics first)", file=sys.stderr)

        def done(r: dict) -> None:
            print(f"{r['scheduler']}: {r['ratio']:.4f} x the best heuristic", file=sys.stderr)

        validated = validate_schedulers(cfg, schedulers, done)
        print(json.dumps(validated, indent=1))
        return 0
    if args.steps is not None:
        cfg = replace(cfg, total_steps=args.steps)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    final = train(cfg, resume=args.resume, progress=not args.no_progress)
    runs = final.pop("run_dir")
    print(json.dumps({"name": cfg.name, "checkpoints": f"{cfg.checkpoints_dir}/{cfg.name}/",
                      "runs": f"{runs}/", **final}))
    return 0


def _seed_list(text: str) -> list[int]:
    """``600,601`` or ``600-607`` (both ends included) as a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            seeds += list(range(int(first), int(last) + 1)) if dash else [int(first)]
        except ValueError:
            raise InputError("--validation-seeds", f"'{part.strip()}' is not a seed or a range "
                             "of seeds (600,601 or 600-607)") from None
    if not seeds:
        raise InputError("--validation-seeds", f"'{text}' names no seed")
    return seeds


def _evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rlsched.evaluation.evaluate import evaluate

    err = Console(stderr=True)
    schedulers = [s.strip() for s in args.scheduler.split(",") if s.strip()]
    _uses_rl(schedulers)
    if args.holdout_report:
        return _holdout_report(args, schedulers, err)
    with _episode_bar(err, "evaluating") as progress:
        ev = evaluate(args.workload, args.pool, schedulers, progress=progress,
                      samples=bool(args.plot), **_run_settings(args))
    _print_table(ev)
    if args.json:
        _write_json(args.json, ev.to_json(), err)
    if args.plot:
        from rlsched.evaluation.plots import write_plots

        for p in write_plots(ev, args.plot):
            err.print(f"wrote {p}")
    return 0


def _holdout_report(args: argparse.Namespace, schedulers: list[str], err) -> int:
    """``evaluate --holdout-report``: see :mod:`rlsched.evaluation.holdout`."""
    from rich.console import Console
    from rich.table import Table

    from rlsched.evaluation.evaluate import evaluate
    from rlsched.evaluation.holdout import holdout_report
    from rlsched.schedulers import make_scheduler

    for name in schedulers:  # an unknown name is named, as without the flag
        if not name.startswith("rl:"):
            make_scheduler(name)
    policies = [s for s in schedulers if s.startswith("rl:")]
    if len(policies) != 1 or len(schedulers) < 2:
        given = f" ({len(policies)} given: {', '.join(policies)})" if len(policies) > 1 else ""
        raise InputError("--holdout-report", "give one learned policy (rl:PATH) and the "
                         f"schedulers to compare it with in --scheduler{given}")
    if args.plot:
        raise InputError("--holdout-report", "draws no plots (use --json)")
    from agents import trained_workloads

    trained, validated = trained_workloads(policies[0].removeprefix("rl:"))
    with _episode_bar(err, "families") as progress:
        def run(spec: str):
            return evaluate([spec], args.pool, schedulers, progress=progress,
                            **_run_settings(args))
        doc = holdout_report(args.workload, policies[0], trained, run, validated)
    doc["config"] = {"pool": args.pool, "arrivals": args.arrivals, "load": args.load,
                     "seeds": list(range(args.seed_offset, args.seed_offset + args.seeds)),
                     "perturb": args.perturb, "estimates": args.estimates,
                     "schedulers": schedulers}
    from rlsched.estimates import EstimateModel

    estimates = EstimateModel.parse(args.estimates).spec
    table = Table(title=f"{policies[0]} family by family on {args.pool} ({args.arrivals}"
                        f"{' at load ' + str(args.load) if args.arrivals == 'poisson' else ''}, "
                        f"seeds {args.seed_offset}..{args.seed_offset + args.seeds - 1}, "
                        f"perturb={args.perturb}, estimates={estimates})",
                  title_justify="left")
    bound = any("bound" in r for r in doc["families"])
    for col in ("family", "policy has", "episodes", "policy avg JCT", "best other",
                "its avg JCT", "policy / best (95% CI)", "hindsight / best") + (
                    ("gap to bound closed",) if bound else ()):
        table.add_column(col, justify="left" if col in ("family", "policy has", "best other")
                         else "right", no_wrap=col in ("family", "policy / best (95% CI)"))
    for r in doc["families"]:
        ratio = "—" if r.get("ratio") is None else \
            f"{r['ratio']:.3f} ({r['ci95'][0]:.3f}–{r['ci95'][1]:.3f})"
        row = [r["family"], r["seen"] or "held out", str(r["episodes"]),
               f"{r['policy_avg_jct']:,.1f}", r.get("best", ""),
               f"{r['best_avg_jct']:,.1f}" if "best_avg_jct" in r else "", ratio,
               f"{r['hindsight_ratio']:.3f}" if "hindsight_ratio" in r else ""]
        if bound:
            row.append("" if r.get("gap_closed") is None else f"{r['gap_closed']:.0%}")
        table.add_row(*row)
    Console(width=max(Console().width, 160)).print(table)
    mean = doc["mean_ratio_held_out"]
    print(f"held-out families: {doc['held_out_families']}; mean policy / best: "
          + ("—" if mean is None else f"{mean:.3f}")
          + ("" if doc["mean_gap_closed_held_out"] is None else
             f"; mean gap to the bound closed: {doc['mean_gap_closed_held_out']:.0%}")
          + ("" if doc["mean_hindsight_ratio_held_out"] is None else
             f"; the best heuristic of each episode, chosen in hindsight: "
             f"{doc['mean_hindsight_ratio_held_out']:.3f}"))
    if args.json:
        _write_json(args.json, doc, err)
    return 0


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate``'s settings of one run from its command line."""
    return {"arrivals": args.arrivals, "load": args.load, "seeds": args.seeds,
            "seed_offset": args.seed_offset, "perturb": args.perturb,
            "estimates": args.estimates, "search_budget": args.search_budget,
            "search_evaluations": args.search_evaluations, "workers": args.workers}


def _write_json(path: str, doc: Any, err) -> None:
    """Write ``--json`` (its folder made if missing) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    err.print(f"wrote {out}")


@contextmanager
def _episode_bar(err, what: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar on stderr (where it is a terminal) over episodes; yields
    the ``progress(done, total, label)`` callback that moves it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        job = bar.add_task(what, total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(job, completed=done, total=total, description=label)

        yield progress


def _print_table(ev) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = ev.summary()
    cfg = ev.config
    title = (f"{', '.join(cfg['workloads'])} on {cfg['pool']} — {cfg['arrivals']}"
             f"{' at load ' + str(cfg['load']) if cfg['load'] else ''}, "
             f"seeds {cfg['seeds'][0]}..{cfg['seeds'][-1]}, perturb={cfg['perturb']}, "
             f"estimates={cfg['estimates']}")
    table = Table(title=title, title_justify="left")
    has_opt = any(s["makespan_vs_optimum"] is not None for s in summary.values())
    for col in ("scheduler", "episodes", "makespan (s)", "avg JCT (s)", "makespan/LB",
                "JCT/LB", "makespan/best", "JCT/best") + (("makespan/opt",) if has_opt else ()):
        table.add_column(col, justify="left" if col == "scheduler" else "right")
    rivals = [s for s in summary.values() if not s["bound"]] or list(summary.values())
    best_mk = min(s["makespan"] for s in rivals)
    best_jct = min(s["avg_jct"] for s in rivals)
    for name, s in summary.items():
        star = not s["bound"] or len(rivals) == len(summary)  # a bound is never the best
        mk = f"{s['makespan']:,.1f}" + (" *" if star and s["makespan"] == best_mk else "")
        jct = f"{s['avg_jct']:,.1f}" + (" *" if star and s["avg_jct"] == best_jct else "")
        shown = name + (" (bound)" if s["bound"] else "")
        row = [shown, str(s["episodes"]), mk, jct, f"{s['makespan_vs_lower_bound']:.3f}",
               f"{s['jct_vs_lower_bound']:.3f}", f"{s['makespan_vs_best']:.3f}",
               f"{s['jct_vs_best']:.3f}"]
        if has_opt:
            v = s["makespan_vs_optimum"]
            row.append("—" if v is None else f"{v:.4f}")
        table.add_row(*row)
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for name, metrics in ev.versus_best_non_learned().items():
        episodes = metrics["avg_jct"]["episodes"]
        few = episodes < MIN_EPISODES_FOR_INTERVAL  # a bootstrap of one or two is no interval
        parts = [f"{label} {m['ratio']:.3f} × {m['against']}'s" + (
            "" if few else f" (95% CI {m['ci95'][0]:.3f}–{m['ci95'][1]:.3f})")
            for label, m in (("avg JCT", metrics["avg_jct"]), ("makespan", metrics["makespan"]))]
        how = (f"{episodes} episode(s), too few for an interval (--seeds "
               f"{MIN_EPISODES_FOR_INTERVAL} or more gives one)") if few else \
            f"paired bootstrap over {episodes} episodes"
        console.print(f"{name}: {'; '.join(parts)}; {how}")
    choice = ev.hindsight_choice().get("avg_jct")
    if choice is not None and choice["episodes"] > 1:
        picks = ", ".join(f"{n} {k}" for n, k in sorted(choice["picks"].items(),
                                                        key=lambda p: (-p[1], p[0])))
        # what no scheduler can do (it knows the outcome): the ceiling of picking among them
        console.print(f"hindsight, each episode's best heuristic: avg JCT {choice['ratio']:.3f} × "
                      f"{choice['against']}'s ({picks}; {choice['episodes']} episodes)")
    for note in ev.notes:
        console.print(f"note: {note}")
    if cfg["bounds"]:
        console.print("note: a bound (oracle:NAME) is told the true runtimes, which no pool "
                      "knows; * marks the best of the others, and JCT/best compares with them")


def _bench_estimates(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rlsched.evaluation.estimate_error import SCHEDULERS, bench_estimates, markdown

    names = tuple(s.strip() for s in args.scheduler.split(",") if s.strip()) \
        if args.scheduler else SCHEDULERS
    with _episode_bar(Console(stderr=True), "estimates") as progress:
        doc = bench_estimates(args.workload, args.pool, args.seeds, args.seed_offset,
                              schedulers=names, progress=progress)
    print(markdown(doc) if args.markdown else json.dumps(doc))
    return 0


def _bench_sim(args: argparse.Namespace) -> int:
    from rlsched.evaluation.sim_speed import bench_sim

    if args.tasks < 10 or args.devices < 1:
        raise InputError("bench sim", "needs --tasks >= 10 and --devices >= 1")
    print(json.dumps(bench_sim(args.tasks, args.devices, args.seed, args.repeats,
                               args.estimates)))
    return 0


def _bench_search(args: argparse.Namespace) -> int:
    from rlsched.evaluation.sim_speed import bench_search

    print(json.dumps(bench_search(args.seconds, args.seed)))
    return 0


def _bench_serve(args: argparse.Namespace) -> int:
    from rlsched.live.dispatch_latency import bench_serve

    print(json.dumps(bench_serve(args.tasks, args.devices, args.scheduler, args.history)))
    return 0


def _bench_peers(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from rlsched.live.peer_benchmark import (
        DEFAULT_CELLS,
        DEFAULT_SCHEDULERS,
        POOLS,
        STREAMS,
        bench_peers,
        plot,
        rows,
    )
    from rlsched.schedulers import make_scheduler

    cells = []
    for text in args.cell or []:
        parts = tuple(p.strip() for p in text.split(","))
        if len(parts) != 3 or parts[0] not in POOLS or parts[1] not in STREAMS \
                or parts[2] not in ("noisy", "none"):
            raise InputError(f"--cell {text}", f"give POOL,STREAM,ESTIMATES with a pool of "
                             f"{', '.join(POOLS)}, a stream of {', '.join(STREAMS)} and "
                             "estimates noisy or none")
        cells.append(parts)
    schedulers = DEFAULT_SCHEDULERS if args.schedulers is None else \
        tuple(s.strip() for s in args.schedulers.split(",") if s.strip())
    for name in schedulers:  # a bad name stops here, not after minutes of peers
        if not name.startswith("rl:"):
            make_scheduler(name)
    err = Console(stderr=True)
    doc = bench_peers(tuple(cells) or DEFAULT_CELLS, args.seeds, args.seed_offset, schedulers,
                      args.scale, progress=lambda line: err.print(f"[dim]{line}[/dim]"))
    table = Table(title="average JCT from each system's start (s)")
    for col in ("cell", "system", "order", "avg JCT", "makespan", "first start", "median gap (ms)",
                "error"):
        table.add_column(col)
    for row in rows(doc):
        table.add_row(*row)
    Console().print(table)
    for cell in doc["cells"]:
        print(f"{cell['pool']} {cell['stream']} ({cell['estimates']}): rlsched {doc['default']} / "
              f"best peer {cell['default_over_best_peer']}, / task-spooler sorted "
              f"{cell['default_over_task_spooler_sorted']} (ideal / best peer "
              f"{cell['ideal_over_best_peer']}, / task-spooler sorted "
              f"{cell['ideal_over_task_spooler_sorted']})")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    if args.plot:
        print(f"wrote {plot(doc, args.plot)}")
    return 0


def _bench_policy(args: argparse.Namespace) -> int:
    from agents.decision_latency import bench_policy

    print(json.dumps(bench_policy(args.checkpoint, args.decisions)))
    return 0


def _counts(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise InputError(flag, f"'{text}' is not a comma list of positive whole numbers")
    return values


def _bench_scale(args: argparse.Namespace) -> int:
    from rlsched.evaluation.scale import DEFAULT_SCHEDULERS, bench_scale, markdown, plot_scale

    tasks, devices = _counts(args.tasks, "--tasks"), _counts(args.devices, "--devices")
    if args.limit <= 0:
        raise InputError("--limit", f"{args.limit} is not a positive number of seconds")
    if args.min_time < 0:
        raise InputError("--min-time", f"{args.min_time} is a negative number of seconds")
    names = DEFAULT_SCHEDULERS if args.schedulers is None else \
        [s.strip() for s in args.schedulers.split(",") if s.strip()]
    _uses_rl(list(names))
    doc = bench_scale(names, tasks, devices, args.limit, args.seed, args.estimates,
                      progress=lambda line: print(line, file=sys.stderr, flush=True),
                      min_s=args.min_time)
    text = json.dumps(doc)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if args.plot is not None:
        print(f"plot: {plot_scale(doc, args.plot)}", file=sys.stderr)
    print(markdown(doc) if args.markdown else text)
    return 0


def _bench_all(args: argparse.Namespace) -> int:
    from agents.decision_latency import bench_policy
    from envs.step_rate import bench_env
    from rlsched.evaluation.sim_speed import bench_search, bench_sim
    from rlsched.live.dispatch_latency import bench_serve

    q = args.quick
    print(json.dumps({
        "sim": bench_sim(100 if q else 1000, 8, 0, 1 if q else 3),
        "search": bench_search(0.2 if q else 2.0, 0),
        "serve": bench_serve(20 if q else 500, 4, "heft", 0),
        "policy": bench_policy(args.checkpoint, 20 if q else 300),
        "env": bench_env(1 if q else 5, 0, 1 if q else 3),
    }))
    return 0


def _bench_env(args: argparse.Namespace) -> int:
    from envs.step_rate import bench_env

    print(json.dumps(bench_env(args.episodes, args.seed, args.repeats)))
    return 0


def _bench_headroom(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from rlsched.evaluation.headroom import bench_headroom
    from rlsched.schedulers import SCHEDULERS

    if args.seeds < 1:
        raise InputError("--seeds", f"needs at least one seed, not {args.seeds}")
    if args.futures < 0:
        raise InputError("--futures", f"needs K >= 0, not {args.futures}")
    if not 0 <= args.margin < 1:
        raise InputError("--margin", f"needs a fraction in [0, 1), not {args.margin}")
    if args.base not in SCHEDULERS:  # fail now, not after minutes of work
        raise InputError("--base", f"unknown heuristic '{args.base}' (known: {', '.join(SCHEDULERS)})")
    err = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        job = bar.add_task("lookahead", total=None)

        def progress(label: str, now: float, horizon: float) -> None:
            bar.update(job, completed=now, total=horizon, description=f"lookahead, {label}")

        print(json.dumps(bench_headroom(args.workload, args.pool, args.seeds, args.seed_offset,
                                        args.load, args.perturb, args.base,
                                        futures=args.futures, margin=args.margin,
                                        progress=progress)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
