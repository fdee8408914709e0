"""The live runtime: ``rlsched serve`` and the queue it serves.

``store`` is the durable queue (SQLite) and the only module that speaks SQL;
``daemon`` is the control loop (store -> cluster view -> Scheduler ->
attempts); ``backends`` run attempts (``local`` process groups, ``ray``);
``executor`` launches and finds one process group; ``telemetry`` reads NVML
or its fake; ``prometheus`` serves the metrics; ``serve_lock`` keeps one
daemon per state directory. Nothing here is imported by the simulator, the
environment or the agents.
"""
