"""The layers of the design hold: dependencies point one way, agents -> envs ->
the core, and inside the core the live runtime and the simulator stay apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

from tests.helpers import ROOT

PACKAGES = ("rlsched", "envs", "agents")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The project modules ``path`` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # `if TYPE_CHECKING:` blocks import nothing at run time
        nodes = [n for n in nodes if not (isinstance(n, ast.If) and "TYPE_CHECKING"
                                          in ast.unparse(n.test))]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import mod` depends on pkg.mod; `from pkg import name`, on pkg
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def project_files():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


MODULES = {module_name(p): p for p in project_files()}


def test_the_core_imports_neither_torch_nor_gymnasium_nor_the_layers_above():
    """Every core module, the live runtime's included, imported in a fresh
    interpreter, loads none of torch, gymnasium, stable_baselines3, envs, agents."""
    core = sorted(m for m in MODULES if m.split(".")[0] == "rlsched"
                  and m not in ("rlsched.__main__", "rlsched.live.backends.ray_cluster"))
    code = ("import importlib, sys\n"
            f"for m in {core!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'gymnasium', 'stable_baselines3', 'sb3_contrib', 'envs', 'agents'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_no_package_imports_one_above_it():
    """agents -> envs -> rlsched; only the command line composes all three
    (and imports the upper two lazily, inside its sub-commands)."""
    rank = {"rlsched": 0, "envs": 1, "agents": 2}
    for name, path in MODULES.items():
        if name == "rlsched.cli":
            assert all(m.split(".")[0] == "rlsched" for m in imports(path, top_level_only=True))
            continue
        for m in imports(path, top_level_only=False):
            assert rank[m.split(".")[0]] <= rank[name.split(".")[0]], f"{name} imports {m}"


def test_the_simulator_side_of_the_core_never_imports_the_live_runtime():
    for name, path in MODULES.items():
        if name.startswith(("rlsched.live", "envs", "agents")) or name == "rlsched.cli":
            continue
        live = [m for m in imports(path, top_level_only=False) if m.startswith("rlsched.live")]
        assert not live, f"{name} imports {live}"


def test_no_module_imports_a_module_that_imports_it_back():
    graph = nx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name)
        for m in imports(path, top_level_only=True):
            if m in MODULES and m != name:
                graph.add_edge(name, m)
    assert list(nx.simple_cycles(graph)) == []
