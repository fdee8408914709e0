"""Evaluation: schedulers compared on workloads in the simulator, as tables,
JSON and plots (``evaluate``, ``plots``), and the benchmarks of the simulator
side (``sim_speed``: decisions and schedules per second; ``headroom``: what a
lookahead over a heuristic gains). Metrics and lower bounds are the core's
(:mod:`rlsched.metrics`): the environment's rewards use them too."""
