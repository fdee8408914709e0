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


class _UniqueKeys(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key given twice in one
    mapping is an error: YAML keeps the last one silently, so a job file
    with two ``name:`` lines would run under the second."""


def _mapping(loader: _UniqueKeys, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # << merges: an explicit key may override a merged one
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping says so
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice in one mapping", key_node.start_mark)
    return loader.construct_mapping(node)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(read_text(path), Loader=_UniqueKeys)
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
