"""The compiled core: the simulator, its view and most heuristics, built by
mypyc from their own sources, used only while they match those sources.

Why: the simulator's event loop and the view it builds at each decision are
plain, fully typed Python, and every episode of every scheduler, the
environment and the policy's advisors run through them. mypyc compiles the
same source to C (nothing is rewritten): fifo's episode runs about twice as
fast, share's and tetris's with 35-40% fewer instructions, and the floats
are the same (IEEE arithmetic and the same libm), so the schedules are the
same: the pinned traces hold either way.

``make setup`` builds them into ``build/native/`` beside the package
(``scripts/build_native.py``) where a C compiler and mypyc are present.
The package has them imported in place of their sources (a finder first on
``sys.meta_path``) only while the build's manifest names this Python and
the sources' current hashes: a checkout without a compiler, an installed
wheel, or a compiled module edited since the build runs the Python sources,
so an edit never runs stale compiled code. (An edit to a module they only
import, such as ``table.py``, is not hashed: what the compiled code assumed
of it is checked as it runs, by mypyc's type checks, and ``make native``
rebuilds.) ``RLSCHED_PURE=1`` asks for the sources whatever is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType

#: compiled, as paths from the repository root: the simulator, the view it
#: builds and its runtime model (every episode's loop runs through them),
#: and the heuristics (the policy's advisors among them) with the
#: structures they keep between decisions; not their interpreted base
#: (``schedulers/base.py``), which the learned policy subclasses, nor heft
#: and its plan (``heft.py``, ``plan.py``), which the tests subclass to
#: check heft's shortcuts against the plain algorithm (a compiled class
#: takes no interpreted subclass), nor cp's ranks (``upward_ranks.py``),
#: slower compiled (docs/speed.md, "The compiled core")
NATIVE_MODULES = ("rlsched/sim.py", "rlsched/view.py", "rlsched/runtime_model.py",
                  "rlsched/gangs.py",
                  *(f"rlsched/schedulers/{m}.py" for m in (
                      "share", "ready_set", "device_columns", "simple", "tetris", "las",
                      "idle_classes", "backfill")))
#: the compiled modules' shared library (mypyc's group), named by the build
SHARED_LIBRARY = "rlsched.core__mypyc"
#: the build's record of what it compiled, in :func:`native_dir`
MANIFEST = "manifest.json"
#: set to anything non-empty: run the Python sources
PURE_ENV = "RLSCHED_PURE"

_ROOT = Path(__file__).resolve().parent.parent


def native_dir(root: Path = _ROOT) -> Path:
    """Where ``scripts/build_native.py`` puts the compiled modules."""
    return root / "build" / "native"


def source_hashes(root: Path = _ROOT) -> dict[str, str]:
    """SHA-256 of each compiled module's source now (empty where one is missing)."""
    out = {}
    for rel in NATIVE_MODULES:
        try:
            out[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        except OSError:
            out[rel] = ""
    return out


def python_tag() -> str:
    """What a compiled module is built for: the interpreter and its ABI."""
    return str(sysconfig.get_config_var("EXT_SUFFIX"))


def manifest(root: Path = _ROOT) -> dict[str, object]:
    """What a build of the sources under ``root`` now records."""
    return {"python": python_tag(), "sources": source_hashes(root)}


def fresh(root: Path = _ROOT) -> bool:
    """Whether ``root``'s build matches this Python and its sources as they are now."""
    try:
        built = json.loads((native_dir(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return built == manifest(root) and all(f.exists() for f in compiled_files(root).values())


class CompiledFinder(MetaPathFinder):
    """Finds each compiled module (and the library they share) in the
    build, ahead of the package's own path; every other module is left to
    the usual finders."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        file = self.files.get(fullname)
        return None if file is None else spec_from_file_location(fullname, file)


def compiled_files(root: Path = _ROOT) -> dict[str, Path]:
    """Module name -> compiled file in ``root``'s build, for every compiled
    module and the library they share."""
    names = [rel.removesuffix(".py").replace("/", ".") for rel in NATIVE_MODULES]
    names.append(SHARED_LIBRARY)
    return {name: native_dir(root).joinpath(*name.split(".")).with_suffix(python_tag())
            for name in names}


def enable(root: Path = _ROOT) -> CompiledFinder | None:
    """Have the compiled modules imported in place of their sources where
    they are fresh and not refused by :data:`PURE_ENV` (before any of them
    is imported); the finder that does it, or None."""
    if os.environ.get(PURE_ENV) or not fresh(root):
        return None
    finder = CompiledFinder(compiled_files(root))
    sys.meta_path.insert(0, finder)
    return finder


def compiled() -> bool:
    """Whether this process runs the compiled simulator (benchmarks report it)."""
    import rlsched.sim

    return not (rlsched.sim.__file__ or "").endswith(".py")
