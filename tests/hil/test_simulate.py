import asyncio
import contextlib
import errno
import os

import pytest

from drivers.masimo.codec import MasimoCodec
from drivers.nonin.codec import NoninCodec
from hil.scenarios import SCENARIOS, vitals_at
from hil.simulate import PtyPort, SimConfig, simulate


def test_scenarios_follow_their_story():
    assert vitals_at("desaturation", 0).spo2 == 97
    assert vitals_at("desaturation", 100).spo2 == 82
    assert vitals_at("tachycardia", 0).pulse == 80
    assert vitals_at("tachycardia", 90).pulse == 150
    assert vitals_at("sensor-off", 35).sensor_off and not vitals_at("sensor-off", 5).sensor_off
    assert set(SCENARIOS) == {"steady", "desaturation", "tachycardia", "sensor-off"}


def test_pty_port_symlink_and_cable_pull(tmp_path):
    port = PtyPort(tmp_path / "dev0")
    name = port.open()
    assert os.path.realpath(tmp_path / "dev0") == name
    fd = os.open(tmp_path / "dev0", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        port.write(b"abc")
        assert os.read(fd, 10) == b"abc"
        port.close()
        assert not (tmp_path / "dev0").exists()
        # A hung-up tty reads as EIO or as end-of-file; the transport treats both as gone.
        try:
            assert os.read(fd, 10) == b""
        except OSError as exc:
            assert exc.errno == errno.EIO
        port.write(b"lost")
        assert port.dropped_bytes == 4
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("cfg", "codec"),
    [
        (SimConfig("masimo", "", "steady", "radical5"), MasimoCodec("m")),
        (SimConfig("nonin", "", "steady", data_format=7), NoninCodec("n", 7)),
    ],
)
async def test_simulator_stream_decodes(tmp_path, cfg, codec):
    path = tmp_path / "dev"
    from dataclasses import replace

    task = asyncio.create_task(simulate(replace(cfg, port=str(path)), duration_s=1.2))
    while not path.exists():
        await asyncio.sleep(0.01)
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    data = b""
    try:
        while not task.done():
            await asyncio.sleep(0.05)
            with contextlib.suppress(BlockingIOError, OSError):
                data += os.read(fd, 4096)
    finally:
        os.close(fd)
    await task
    events = codec.feed(data)
    assert codec.stats.frames_ok >= 1
    assert any(getattr(e, "label", None) in ("SPO2",) and e.value for e in events)
