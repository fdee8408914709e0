"""Gymnasium environments over the rlsched simulator.

``import envs`` registers ``rlsched/DagScheduling-v0``::

    import gymnasium, envs
    env = gymnasium.make("rlsched/DagScheduling-v0", workload="stg:workloads/stg",
                         pool="identical:4")

The observation encoder (:mod:`envs.encoder`) is a plain function of the
cluster view, shared with the deployed policy. This package imports the
core; the core never imports it.
"""

import gymnasium

from envs.dag_env import DagSchedulingEnv, InvalidActionError, MaskedDiscrete
from envs.encoder import ENCODER_VERSION, Maxima, encode

ENV_ID = "rlsched/DagScheduling-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="envs.dag_env:DagSchedulingEnv")

__all__ = ["DagSchedulingEnv", "ENCODER_VERSION", "ENV_ID", "InvalidActionError", "Maxima",
           "MaskedDiscrete", "encode"]
