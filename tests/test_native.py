"""The compiled core (``rlsched.native``): used only while it matches its
sources, and scheduling exactly as the Python sources do."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest

from rlsched import native
from rlsched.native import (
    MANIFEST,
    NATIVE_MODULES,
    PURE_ENV,
    SHARED_LIBRARY,
    compiled_files,
    enable,
    fresh,
    manifest,
    native_dir,
)
from tests.helpers import ROOT


@pytest.fixture
def checkout(tmp_path):
    """A copy of the compiled modules' sources with a build that matches
    them (stand-in files where the compiled modules go)."""
    for rel in NATIVE_MODULES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    for file in compiled_files(tmp_path).values():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"")
    (native_dir(tmp_path) / MANIFEST).write_text(json.dumps(manifest(tmp_path)))
    return tmp_path


@pytest.fixture
def meta_path(monkeypatch):
    """``sys.meta_path``, restored after the test, with no run-from-source request."""
    monkeypatch.delenv(PURE_ENV, raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    return sys.meta_path


def test_a_build_that_matches_its_sources_is_found_before_them(checkout, meta_path) -> None:
    finder = enable(root=checkout)
    assert finder is not None and meta_path[0] is finder
    share = finder.find_spec("rlsched.schedulers.share", None)
    assert share is not None and share.origin == str(
        native_dir(checkout) / "rlsched" / "schedulers" / f"share{native.python_tag()}")
    assert finder.find_spec(SHARED_LIBRARY, None) is not None
    assert finder.find_spec("rlsched.cli", None) is None  # the rest, from source


def test_a_source_edited_since_the_build_runs_from_source(checkout, meta_path) -> None:
    source = checkout / NATIVE_MODULES[0]
    source.write_text(source.read_text() + "\n# an edit\n")
    before = list(meta_path)
    assert enable(root=checkout) is None
    assert meta_path == before


def test_a_build_for_another_python_or_with_a_module_missing_is_not_used(checkout) -> None:
    record = native_dir(checkout) / MANIFEST
    built = json.loads(record.read_text())
    record.write_text(json.dumps({**built, "python": ".cpython-39-x86_64-linux-gnu.so"}))
    assert not fresh(checkout)
    record.write_text(json.dumps(built))
    assert fresh(checkout)
    compiled_files(checkout)[SHARED_LIBRARY].unlink()
    assert not fresh(checkout)
    record.write_text("{not json")
    assert not fresh(checkout)


def test_asking_for_the_python_sources_is_honoured_whatever_is_built(checkout, meta_path,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv(PURE_ENV, "1")
    assert fresh(checkout) and enable(root=checkout) is None


def test_the_makefile_rebuilds_when_a_compiled_module_changes() -> None:
    listed = subprocess.run(["make", "-s", "--eval", "native-sources: ; @echo $(NATIVE_SRC)",
                             "native-sources"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    assert set(NATIVE_MODULES) <= set(listed)


def test_an_attempt_survives_pickling_as_evaluate_s_workers_send_it() -> None:
    from rlsched.sim import Attempt

    gang = Attempt(3, 1, 2.5, 7.25, False, (1, 4))
    assert pickle.loads(pickle.dumps(gang)) == gang
    assert pickle.loads(pickle.dumps(gang)).devices == (1, 4)


#: pinned settings run from the Python sources in a second process: with the
#: compiled core in use here, both must give the recorded traces
_PURE_RUNS = (("demo", "share"), ("gangs", "heft"), ("scale", "sjf"), ("gavel", "cp"))


@pytest.mark.skipif(not native.compiled(), reason="the compiled core is not built here")
def test_the_python_sources_schedule_as_the_compiled_core_does() -> None:
    from tests.test_schedules_unchanged import RECORDED

    script = ("import sys, rlsched.native as n; from tests.test_schedules_unchanged import "
              "trace_hash; assert not n.compiled(); "
              f"print(*(trace_hash(s, h) for s, h in {_PURE_RUNS!r}))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, PURE_ENV: "1"}, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [RECORDED[run] for run in _PURE_RUNS]
