"""The compiled core: the simulator and its view, built by mypyc from their
own sources, used only while they match those sources.

Why: the simulator's event loop and the view it builds at each decision are
plain, fully typed Python, and every episode of every scheduler, the
environment and the live daemon's what-ifs run through them. mypyc compiles
the same source to C (nothing is rewritten): fifo's episode runs about twice
as fast, every other scheduler's somewhat faster, and the floats are the
same (IEEE arithmetic and the same libm), so the schedules are the same:
the pinned traces hold either way.

``make setup`` builds them into ``build/native/`` beside the package
(``scripts/build_native.py``) where a C compiler and mypyc are present.
The package puts that folder first on its path only while the build's
manifest names this Python and the sources' current hashes: a checkout
without a compiler, an installed wheel, or a source edited since the build
runs the Python sources, so an edit never runs stale compiled code.
``RLSCHED_PURE=1`` asks for the sources whatever is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from pathlib import Path

#: compiled, as paths from the repository root (the simulator, and the view
#: it builds: the two every episode's loop runs through)
NATIVE_MODULES = ("rlsched/sim.py", "rlsched/view.py")
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
    return built == manifest(root) and all(
        (native_dir(root) / rel).with_suffix(python_tag()).exists() for rel in NATIVE_MODULES)


def enable(package_path: list[str], root: Path = _ROOT) -> bool:
    """Put the compiled modules first on ``package_path`` (the ``rlsched``
    package's ``__path__``) where they are fresh and not refused by
    :data:`PURE_ENV`; whether they now are."""
    if os.environ.get(PURE_ENV) or not fresh(root):
        return False
    package_path.insert(0, str(native_dir(root) / "rlsched"))
    return True


def compiled() -> bool:
    """Whether this process runs the compiled simulator (benchmarks report it)."""
    import rlsched.sim

    return not (rlsched.sim.__file__ or "").endswith(".py")
