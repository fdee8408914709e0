"""Gymnasium environments over the rlsched simulator.

This package will hold ``DagSchedulingEnv``: the simulator, the observation
encoder (a plain function of the cluster view, shared with the deployed
policy), action masks and rewards. It imports the core, never the reverse.
"""
