"""Shared fixtures: the bundled workloads, loaded once per session."""

from __future__ import annotations

import pytest

from tests.helpers import STG, WFCOMMONS


@pytest.fixture(scope="session")
def stg_instances():
    from rlsched.sources.stg import load_stg

    return load_stg(STG)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """The quick training config, trained once per session (about ten
    seconds): ``(config, its folder, what train returned)``. Tests read it;
    whatever they write goes to their own tmp_path."""
    from dataclasses import replace

    from agents.train import TrainConfig, train
    from tests.helpers import ROOT

    tmp = tmp_path_factory.mktemp("quick-run")
    cfg = replace(TrainConfig.from_yaml(ROOT / "configs" / "quick.yaml"),
                  runs_dir=str(tmp / "runs"), checkpoints_dir=str(tmp / "checkpoints"))
    return cfg, tmp, train(cfg, progress=False)


@pytest.fixture(scope="session")
def wfcommons_instances():
    from rlsched.sources.wfcommons import load_wfcommons

    return load_wfcommons(WFCOMMONS)
