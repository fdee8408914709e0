"""rlsched: learn to schedule DAG jobs on a pool of GPUs, then run the policy live.

The core package holds the workload and pool models, their loaders, the
discrete-event simulator, the classic heuristics, metrics and lower bounds.
It imports neither gymnasium nor torch: the environment (``envs``) and the
learned policy (``agents``) build on it, never the other way round.
"""

__version__ = "0.1.0"

from rlsched.native import enable as _enable_native

# the compiled core (rlsched/native.py), where built and matching its sources
_enable_native()
