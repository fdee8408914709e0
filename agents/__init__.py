"""Learned schedulers: the GNN policy, MaskablePPO training, checkpoints.

This package will hold the policy and the adapter that turns a checkpoint
into a :class:`rlsched.schedulers.Scheduler`. It imports ``envs`` and the core.
"""
