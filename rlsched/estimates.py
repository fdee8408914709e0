"""Estimate models: what users tell a simulated pool about their tasks' runtimes.

A real pool never knows a task's runtime in advance; it has the user's
estimate, if any, and history (:mod:`rlsched.runtime_model`). In simulation
the estimate is drawn from the true runtime by one of these models
(``--estimates`` on ``evaluate``, ``estimates`` in training configs and the
environment's kwargs):

``exact``
    Schedulers see the true runtime, and nothing else. Yesterday's world:
    kept for STG studies against proven optima, and as a bound
    (``oracle:NAME`` runs any heuristic in it).
``noisy:SIGMA[:BIAS]``
    Each task without an estimate of its own gets ``work * exp(BIAS + SIGMA * z)``,
    ``z`` standard normal, drawn in table order under the episode's seed.
    A job file's own ``estimate:`` is kept where the file gives a
    ``runtime:`` too (else the estimate is the runtime, and is drawn around
    like any other). The runtime model then blends estimate and history.
``none``
    No estimates at all, a job file's included: only history.
``default``
    :data:`DEFAULT_ESTIMATES`, calibrated from published measurements of how
    far users' runtime estimates fall from the truth (see the README's
    "What schedulers know"): users mostly *over*-estimate, the median by about
    a factor of two, and estimates spread over an order of magnitude.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from rlsched.errors import InputError
from rlsched.table import WorkloadTable
from rlsched.workload import Instance

#: the estimate model of ``default``: median estimate twice the runtime
#: (bias ln 2), log-space spread 1.0
DEFAULT_ESTIMATES = "noisy:1.0:0.69"
KINDS = ("exact", "noisy", "none")


@dataclass(frozen=True)
class EstimateModel:
    """One of the models of the module; :meth:`parse` reads a spec."""

    kind: str = "exact"
    sigma: float = 0.0
    bias: float = 0.0

    @classmethod
    def parse(cls, spec: str, source: str = "--estimates") -> EstimateModel:
        """The model a spec names (``exact``, ``noisy:1.0``, ``noisy:1.0:0.7``,
        ``none``, ``default``); :class:`InputError` naming ``source`` if it
        cannot be read."""
        text = str(spec).strip()
        if text == "default":
            text = DEFAULT_ESTIMATES
        kind, _, rest = text.partition(":")
        if kind in ("exact", "none") and not rest:
            return cls(kind)
        if kind != "noisy":
            raise InputError(source, f"'{spec}' is not an estimate model (use exact, "
                             "noisy:SIGMA[:BIAS], none or default)")
        parts = rest.split(":")
        if not rest or len(parts) > 2:
            raise InputError(source, f"'{spec}': noisy takes SIGMA and an optional BIAS, "
                             "as in noisy:1.0 or noisy:1.0:0.7")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise InputError(source, f"'{spec}': SIGMA and BIAS must be numbers") from None
        if not all(math.isfinite(v) for v in values):
            raise InputError(source, f"'{spec}': SIGMA and BIAS must be finite")
        if values[0] < 0:
            raise InputError(source, f"'{spec}': SIGMA must be 0 or more, not {parts[0]}")
        return cls("noisy", values[0], values[1] if len(values) > 1 else 0.0)

    @property
    def exact(self) -> bool:
        """Whether schedulers see the truth (no runtime model runs)."""
        return self.kind == "exact"

    @property
    def spec(self) -> str:
        if self.kind != "noisy":
            return self.kind
        return f"noisy:{self.sigma:g}" + (f":{self.bias:g}" if self.bias else "")

    def draw(self, table: WorkloadTable, work: Sequence[float], seed: int) -> tuple[float, ...]:
        """Each task's estimate under this model, in table order (NaN: none),
        from the true ``work``, drawn under ``seed``; where the table holds
        a user's estimate that is not the runtime itself (a job file that
        gives ``runtime:`` too), ``noisy`` keeps it."""
        if self.kind == "exact":
            return tuple(work)
        if self.kind == "none":
            return (math.nan,) * table.n_tasks
        z = np.random.default_rng([seed, 7717]).standard_normal(table.n_tasks)
        factor = np.exp(self.bias + self.sigma * z)
        # a job file's estimate is its own where the file gives a runtime too;
        # where it gave none, the estimate *is* the runtime, and is drawn anew
        return tuple(given if given == given and given != w else w * float(f)
                     for given, w, f in zip(table.estimate, work, factor))

    def apply(self, instance: Instance, seed: int) -> Instance:
        """``instance`` with each task's ``estimate`` as :meth:`draw` gives it
        to the simulator (for a job file to replay what a simulation saw)."""
        table, work = WorkloadTable.with_truth(instance.jobs)
        drawn = dict(zip(table.task_ids, self.draw(table, work, seed)))
        return replace(instance, jobs=tuple(replace(job, tasks=tuple(
            t.evolve(estimate=None if drawn[(job.name, t.id)] != drawn[(job.name, t.id)]
                     else drawn[(job.name, t.id)]) for t in job.tasks)) for job in instance.jobs))


EXACT = EstimateModel("exact")
