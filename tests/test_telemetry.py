"""NVML telemetry, tested against a fake of the pynvml module (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlsched.live.telemetry import FakeNvml, NvmlSource, NvmlUnavailable
from rlsched.pool import identical_pool, preset_pool


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield proc
    proc.kill()
    proc.wait()


def test_devices_come_from_nvml_with_units_converted():
    source = NvmlSource(FakeNvml(preset_pool("workstation-4")))
    names = [d.name for d in source.devices]
    assert names == ["Fake a100-80gb", "Fake rtx-4090", "Fake rtx-3090", "Fake rtx-3090"]
    assert source.devices[0].memory_gib == 80 and source.devices[0].power_limit_w == 400
    idle = source.sample()
    assert all(s.healthy and s.utilization == 0 and s.memory_used == 0 for s in idle)


def test_a_declared_process_shows_as_memory_load_and_a_process(sleeper):
    fake = FakeNvml(identical_pool(2))
    source = NvmlSource(fake)
    fake.declare(sleeper.pid, 1, 6.0)
    s = source.sample()
    assert s[1].utilization == 1.0 and s[1].memory_used == pytest.approx(6.0)
    assert s[0].memory_used == 0
    assert [p.pid for p in source.processes()[1]] == [sleeper.pid]
    sleeper.kill()
    sleeper.wait()
    assert source.sample()[1].memory_used == 0  # a dead process frees its memory


def test_an_unsupported_field_does_not_take_the_device_out():
    fake = FakeNvml(identical_pool(1))
    source = NvmlSource(fake)
    fake.unsupported = {"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature"}
    (s,) = source.sample()
    assert s.healthy and s.power_w == 0 and s.temperature_c == 0


def test_a_lost_gpu_reports_unhealthy_and_the_others_keep_reporting():
    fake = FakeNvml(identical_pool(3))
    source = NvmlSource(fake)
    fake.lost = {1}
    s = source.sample()
    assert [d.healthy for d in s] == [True, False, True]
    assert source.processes()[1] == []


def test_a_driver_that_disappears_mid_run_makes_every_device_unhealthy_not_a_crash():
    fake = FakeNvml(identical_pool(2))
    source = NvmlSource(fake)
    fake.driver_gone = True
    s = source.sample()
    assert [d.healthy for d in s] == [False, False]
    assert source.processes() == [[], []]


def test_no_driver_is_one_clear_error_suggesting_the_fake_pool():
    fake = FakeNvml(identical_pool(1))
    fake.driver_gone = True
    with pytest.raises(NvmlUnavailable, match="fake:N"):
        NvmlSource(fake)


def test_the_real_module_without_a_driver_fails_cleanly():
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        with pytest.raises(NvmlUnavailable, match="no NVIDIA driver available"):
            NvmlSource()
    else:  # a machine with a driver: the real source works
        pynvml.nvmlShutdown()
        source = NvmlSource()
        assert len(source.sample()) == len(source.devices)
        source.close()
