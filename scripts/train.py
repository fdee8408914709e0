#!/usr/bin/env python3
"""Train a policy: the same as ``rlsched train``.

    python scripts/train.py --config configs/quick.yaml
"""

import sys

from rlsched.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
