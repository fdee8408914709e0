"""Prometheus metrics of the live scheduler, on 127.0.0.1 only.

GPU gauges carry the DCGM exporter's names and labels (``gpu``, ``UUID``) so
existing Grafana dashboards work; scheduler metrics are prefixed ``rlsched_``.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from rlsched.errors import InputError
from rlsched.live.lifecycle import TaskStatus

if TYPE_CHECKING:
    from rlsched.live.daemon import Daemon

GPU_GAUGES = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilisation (%)", lambda s: 100 * s.utilization),
    ("DCGM_FI_DEV_FB_USED", "framebuffer memory used (MiB)", lambda s: 1024 * s.memory_used),
    ("DCGM_FI_DEV_FB_FREE", "framebuffer memory free (MiB)", lambda s: 1024 * s.memory_free),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (C)", lambda s: s.temperature_c),
    ("DCGM_FI_DEV_POWER_USAGE", "power draw (W)", lambda s: s.power_w),
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock (MHz)", lambda s: s.sm_clock_mhz),
)


#: upper bounds (seconds) of the job completion time histogram's buckets
JCT_BUCKETS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)
#: upper bounds (seconds) of the queue wait histogram's buckets
WAIT_BUCKETS = (0.1, 1, 10, 60, 300, 900, 3600, 3 * 3600, 12 * 3600)


def histogram(name: str, help_text: str, values: list[float],
              buckets: tuple[float, ...]) -> list[str]:
    """A Prometheus histogram in text format: cumulative buckets, sum, count."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound in buckets:
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {sum(v <= bound for v in values)}')
    lines += [f'{name}_bucket{{le="+Inf"}} {len(values)}',
              f"{name}_sum {sum(values):.3f}", f"{name}_count {len(values)}"]
    return lines


def render(daemon: Daemon) -> str:
    lines = []
    samples = list(zip(daemon.latest, daemon.live))  # the control loop's last round
    for name, help_text, value in GPU_GAUGES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for s, d in samples:
            lines.append(f'{name}{{gpu="{d.key}",UUID="{d.info.uuid}",Hostname="{d.host}"}} '
                         f'{value(s):.3f}')
    status = daemon.store.status()
    tasks = Counter(t["state"] for j in status["jobs"] for t in j["tasks"])
    jobs = Counter(j["state"] for j in status["jobs"])
    lines += ["# HELP rlsched_tasks tasks by state", "# TYPE rlsched_tasks gauge"]
    lines += [f'rlsched_tasks{{state="{s}"}} {tasks.get(s.value, 0)}' for s in TaskStatus]
    lines += ["# HELP rlsched_jobs jobs by state", "# TYPE rlsched_jobs gauge"]
    lines += [f'rlsched_jobs{{state="{s}"}} {jobs.get(s, 0)}'
              for s in ("queued", "running", "done", "failed", "cancelled")]
    lines += histogram("rlsched_job_completion_seconds",
                       "job completion time (submitted to last task done) of finished jobs",
                       [j["jct_s"] for j in status["jobs"] if j["jct_s"] is not None],
                       JCT_BUCKETS)
    lines += histogram("rlsched_queue_wait_seconds",
                       "time a task waited from when it could start (job submitted, parents "
                       "done) to its first attempt", daemon.store.queue_waits(), WAIT_BUCKETS)
    lines += ["# HELP rlsched_decisions_total placements made", "# TYPE rlsched_decisions_total counter",
              f"rlsched_decisions_total {daemon.decisions}",
              "# HELP rlsched_shield_fallbacks_total placements refused by the shield",
              "# TYPE rlsched_shield_fallbacks_total counter",
              f"rlsched_shield_fallbacks_total {daemon.shield_fallbacks}",
              "# HELP rlsched_misplaced_processes_total processes NVML saw on a GPU their "
              "task was not given",
              "# TYPE rlsched_misplaced_processes_total counter",
              f"rlsched_misplaced_processes_total {len(daemon.misplaced)}",
              "# HELP rlsched_placements_total placements per GPU",
              "# TYPE rlsched_placements_total counter"]
    lines += [f'rlsched_placements_total{{gpu="{g}"}} {n}'
              for g, n in sorted(daemon.placements.items())]
    return "\n".join(lines) + "\n"


def serve_metrics(daemon: Daemon, port: int) -> ThreadingHTTPServer:
    """Start the endpoint on 127.0.0.1:``port`` in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = render(daemon).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as e:
        raise InputError(f"--metrics-port {port}", f"cannot listen on 127.0.0.1:{port} "
                         f"({e.strerror}); pick another port") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
