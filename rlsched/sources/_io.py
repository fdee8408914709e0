"""Reading files for the loaders, with errors a user can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from rlsched.errors import InputError


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise InputError(str(path), "not a text file") from None
    except OSError as e:
        raise InputError(str(path), f"cannot read ({e.strerror})") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(str(path), f"not valid JSON ({e.msg} at line {e.lineno})") from None


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or "parse error"
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(str(path), f"not valid YAML ({problem}{where})") from None
    except RecursionError:
        raise InputError(str(path), "not usable YAML (nested too deeply)") from None


def files_in(path: Path, suffixes: tuple[str, ...], source: str) -> list[Path]:
    """``path`` itself, or the files under it with one of ``suffixes``, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes)
        if not found:
            raise InputError(source, f"no {'/'.join(suffixes)} files in directory {path}")
        return found
    raise InputError(source, f"no such file or directory: {path}")
