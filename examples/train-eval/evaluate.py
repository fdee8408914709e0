"""A stand-in for an evaluation: reads the trained models and reports a score."""

import argparse
import os
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--models", nargs="+", required=True)
parser.add_argument("--data", default="data", help="the prepared data directory")
args = parser.parse_args()
for model in args.models:
    (Path(args.data) / f"model-{model}.txt").read_text()
    print(f"{model}: accuracy 1.000 (GPU {os.environ.get('CUDA_VISIBLE_DEVICES')})")
