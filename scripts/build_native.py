"""Compile the core (``NATIVE_MODULES`` in :mod:`rlsched.native`) with mypyc into ``build/native/``.

``make setup`` runs this; run it again after editing a compiled module
(``make native``), or the package runs that module's Python source (see
:mod:`rlsched.native`). Where mypyc or a C compiler is missing it says so
and exits 0: the package runs its sources, only slower.

    python scripts/build_native.py          # build (a minute and a half)
    python scripts/build_native.py --clean  # remove the build
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlsched.native import (  # noqa: E402
    MANIFEST,
    NATIVE_MODULES,
    SHARED_LIBRARY,
    manifest,
    native_dir,
)


def build() -> int:
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution
    except ImportError as e:
        print(f"build_native: {e.name} is not installed; the package runs its Python sources")
        return 0
    out = native_dir(ROOT)
    shutil.rmtree(out, ignore_errors=True)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "build.log"
        try:
            os.chdir(ROOT)
            # one group, its shared library inside the package
            with open(log, "w") as sink:
                fd_out, fd_err = os.dup(1), os.dup(2)
                os.dup2(sink.fileno(), 1)
                os.dup2(sink.fileno(), 2)
                try:
                    modules = mypycify(list(NATIVE_MODULES),
                                       group_name=SHARED_LIBRARY.removesuffix("__mypyc"),
                                       target_dir=str(Path(tmp) / "c"))
                    dist = Distribution({"name": "rlsched-native", "ext_modules": modules})
                    cmd = dist.get_command_obj("build_ext")
                    cmd.build_lib = str(out)  # type: ignore[attr-defined]
                    cmd.build_temp = str(Path(tmp) / "o")  # type: ignore[attr-defined]
                    dist.run_command("build_ext")
                finally:
                    os.dup2(fd_out, 1)
                    os.dup2(fd_err, 2)
        except (Exception, SystemExit) as e:  # a compiler missing, or refusing
            errors = [line for line in (log.read_text().splitlines() if log.exists() else [])
                      if "error" in line.lower()][-3:]
            reason = str(e) if len(str(e)) <= 160 else str(e)[:157] + "..."
            print(f"build_native: not built ({type(e).__name__}: {reason}); the package runs "
                  "its Python sources" + "".join(f"\n  {line}" for line in errors))
            shutil.rmtree(out, ignore_errors=True)
            return 0
        finally:
            os.chdir(cwd)
    (out / MANIFEST).write_text(json.dumps(manifest(ROOT), indent=1) + "\n")
    print(f"build_native: compiled {', '.join(NATIVE_MODULES)} into {out.relative_to(ROOT)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the build")
    if parser.parse_args().clean:
        shutil.rmtree(native_dir(ROOT), ignore_errors=True)
        return 0
    return build()


if __name__ == "__main__":
    sys.exit(main())
