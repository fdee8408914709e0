"""Learned schedulers: the GNN policy, MaskablePPO training, checkpoints.

Importing this package registers the ``rl:PATH`` scheduler prefix, so
``rlsched evaluate --scheduler heft,rl:checkpoints/default.zip`` works. It
imports ``envs`` and the core; neither imports it.
"""

from rlsched.schedulers import SCHEDULER_PREFIXES


def _load(path: str):
    from agents.scheduler import RLScheduler

    return RLScheduler(path)


SCHEDULER_PREFIXES["rl"] = _load
