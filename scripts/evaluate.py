#!/usr/bin/env python3
"""Evaluate schedulers in the simulator: the same as ``rlsched evaluate``.

    python scripts/evaluate.py --workload stg:workloads/stg --pool identical:4
"""

import sys

from rlsched.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
