"""Shared fixtures: the bundled workloads, loaded once per session."""

from __future__ import annotations

import pytest

from tests.helpers import STG, WFCOMMONS


@pytest.fixture(scope="session")
def stg_instances():
    from rlsched.sources.stg import load_stg

    return load_stg(STG)


@pytest.fixture(scope="session")
def wfcommons_instances():
    from rlsched.sources.wfcommons import load_wfcommons

    return load_wfcommons(WFCOMMONS)
