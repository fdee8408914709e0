"""Learned schedulers: the GNN policy, MaskablePPO training, checkpoints.

Importing this package registers the ``rl:PATH`` scheduler prefix, so
``rlsched evaluate --scheduler heft,rl:checkpoints/default.zip`` works, and
``rl:default`` names the shipped policy from any directory. It imports
``envs`` and the core; neither imports it.
"""

from pathlib import Path

from rlsched.errors import InputError
from rlsched.schedulers import SCHEDULER_PREFIXES, SLOW_PREFIX_CHECKS

#: where the shipped policy lives: ``checkpoints/`` of this checkout
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"


def checkpoint_path(spec: str) -> Path:
    """The checkpoint ``rl:SPEC`` names: a path (from the working directory),
    or ``NAME`` for ``checkpoints/NAME.zip`` of the shipped ones."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = SHIPPED / f"{spec}.zip"
    by_name = "/" not in spec and not spec.endswith(".zip")
    if by_name and shipped.is_file():
        return shipped
    if path.is_dir():  # a training run's folder: its checkpoints are inside
        inside = sorted(p.name for p in path.glob("*.zip"))
        raise InputError(f"rl:{spec}", "is a directory; name a checkpoint in it" + (
            f" ({', '.join(inside[:4])}{', ...' if len(inside) > 4 else ''}; best.zip is "
            "the best on validation)" if inside else " (it holds no .zip)"))
    raise InputError(f"rl:{spec}", f"no such checkpoint (looked for {path.resolve()}"
                     f"{f' and {shipped}' if by_name else ''}; rl:default is the shipped one)")


def trained_workloads(spec: str) -> tuple[list[str], list[str]]:
    """The workload SPECs the checkpoint ``rl:SPEC`` trained on, and those
    it was validated (chosen) on, from its card: every kind's (its config's
    top-level workload where it has no kinds); validated on its training
    kinds where the config names no ``validation_kinds``. A policy tuned
    from another (``resumed_from`` on its card) has trained and been chosen
    on what that one was, too."""
    import json

    path = checkpoint_path(spec)
    card = path.with_suffix(".json")
    try:
        doc = json.loads(card.read_text())
        config = doc["config"]

        def workloads(kinds: list[dict]) -> list[str]:
            return sorted({k.get("workload", config["workload"]) for k in kinds or [{}]})
        trained = workloads(config.get("kinds"))
        validation = config.get("validation_kinds")
        validated = workloads(validation) if validation else trained
        origin = doc.get("resumed_from")
        if origin is not None:  # (its lists already hold its own origin's)
            trained = sorted({*trained, *origin.get("workloads", [])})
            validated = sorted({*validated, *origin.get("validation_workloads", [])})
        return trained, validated
    except OSError:
        raise InputError(str(path), f"has no card {card.name} beside it") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(str(card), f"corrupt checkpoint card: no training workloads ({e})"
                         ) from None


def _load(spec: str):
    from agents.scheduler import RLScheduler

    return RLScheduler(checkpoint_path(spec))


def _check(spec: str) -> None:
    """What can be checked without torch: the checkpoint and its card exist
    (the rest, from the card's encoder version on, is checked as it loads)."""
    path = checkpoint_path(spec)
    card = path.with_suffix(".json")
    if not card.is_file():
        raise InputError(str(path), f"has no card {card.name} beside it")


SCHEDULER_PREFIXES["rl"] = _load
SLOW_PREFIX_CHECKS["rl"] = _check
