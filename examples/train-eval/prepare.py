"""A stand-in for a data-preparation step: writes a small data set to --out.

It takes a couple of seconds, so the example pipeline runs end to end anywhere;
replace it with your own script (the job file only names a command)."""

import argparse
import os
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", required=True, help="directory for the prepared data")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
print(f"preparing data in {out} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})",
      flush=True)
time.sleep(1)
(out / "train.csv").write_text("x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(100)))
print("wrote", out / "train.csv")
