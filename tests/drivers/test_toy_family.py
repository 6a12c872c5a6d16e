"""A new device family needs its own folder and one registry line, nothing else.

A toy family, defined here only, is registered with `registry.register()` and runs
through `bedside decode` (appliance.decode and the command line) and through a
whole gateway reading a pty with pyserial, without any other module knowing it.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
from datetime import UTC
from typing import Any

import pytest

from appliance.cli import main
from appliance.config import ConfigError, parse_config
from appliance.core.clock import Clock
from appliance.core.model import DeviceEvent, Observation, Reading, TechnicalEvent
from appliance.core.terms import Term
from appliance.decode import decode_stream
from appliance.gateway import Gateway
from appliance.sdnotify import Notifier
from drivers import registry
from drivers.codec import CodecStats
from drivers.family import CodecSettings, DeviceFamily, cached_table
from drivers.serial.line import LineRule, SerialLine
from rules.outputs import MemoryOutput

# ARCHITECTURE.md shows the lines between these markers verbatim (tests/test_architecture_doc.py).
# --- architecture example: begin ---
_LINE = re.compile(rb"^TOY (?P<label>[A-Z]+)=(?P<value>\d+)$")


class ToyCodec:
    """`TOY HR=72` per line; a line that does not parse is a bad frame."""

    def __init__(self, device_id: str, clock: Clock) -> None:
        self.device_id = device_id
        self.stats = CodecStats()
        self._clock = clock
        self._buf = bytearray()
        self._seq = 0

    def feed(self, data: bytes) -> list[DeviceEvent]:
        self._buf += data
        self.stats.bytes_in += len(data)
        events: list[DeviceEvent] = []
        while (end := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:end]).strip()
            del self._buf[: end + 1]
            match = _LINE.match(line)
            if match is None:
                self.stats.frames_bad += 1
                events.append(TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad))
                continue
            self.stats.frames_ok += 1
            self._seq += 1
            label = match["label"].decode()
            events.append(Reading(self.device_id, label, float(match["value"]), "/min", seq=self._seq))
        return events

    def data_to_send(self) -> bytes:
        return b""


def _codec(protocol: str, device_id: str, clock: Clock, settings: CodecSettings) -> ToyCodec:
    return ToyCodec(device_id, clock)


_HR = Term("MDC_ECG_HEART_RATE", 147842, "/min", "toy family for tests")
_terms, _table = cached_table(lambda: {"HR": _HR})
TOY = DeviceFamily(
    name="toy",
    protocols=("toy", "toy-fast"),
    codec=_codec,
    transports=(SerialLine({"toy-fast": (LineRule("baud", (115200,), "a fast toy runs at 115200"),)}),),
    terms=_terms,
    table=_table,
    invalid_flags=frozenset({"toy_broken"}),
    summary="a toy family (tests only)",
)
# --- architecture example: end ---


@pytest.fixture
def toy():
    with registry.register(TOY) as family:
        yield family
    assert "toy" not in registry.protocols()


def test_decode_reads_the_toy_family(toy):
    out = io.StringIO()
    summary = decode_stream("toy", io.BytesIO(b"TOY HR=72\nnoise\nTOY XX=1\n"), out, UTC)
    assert (summary.frames_ok, summary.frames_bad, summary.observations) == (2, 1, 1)
    assert summary.unmapped == {"toy:XX": 1}
    assert '"metric":"MDC_ECG_HEART_RATE"' in out.getvalue().replace(" ", "")


def test_bedside_decode_offers_and_reads_the_toy_family(toy, tmp_path, capsys):
    capture = tmp_path / "toy.txt"
    capture.write_bytes(b"TOY HR=64\n")
    assert main(["decode", "--protocol", "toy", str(capture)]) == 0
    assert "MDC_ECG_HEART_RATE" in capsys.readouterr().out


def test_config_takes_the_toy_family_and_its_line_rules(toy):
    base = '[gateway]\nbed_id = "b"\n[[devices]]\nid = "t"\nport = "/dev/ttyS9"\n'
    assert parse_config(base + 'protocol = "toy"\n').devices[0].protocol == "toy"
    with pytest.raises(ConfigError, match=r"devices\[\"t\"\]\.baud: a fast toy runs at 115200"):
        parse_config(base + 'protocol = "toy-fast"\n', "g.toml")
    with pytest.raises(ConfigError, match=r"devices\[\"t\"\]\.port: BLE devices"):
        parse_config(base.replace("/dev/ttyS9", "ble:any") + 'protocol = "toy"\n', "g.toml")


def test_without_registration_the_toy_is_unknown():
    with pytest.raises(ConfigError, match=r"devices\[\"t\"\]\.protocol: must be one of"):
        parse_config('[gateway]\nbed_id = "b"\n[[devices]]\nid = "t"\nport = "/dev/x"\nprotocol = "toy"\n', "g")


async def test_a_gateway_reads_the_toy_family_on_a_pty(toy, tmp_path):
    master, slave = os.openpty()
    port = os.ttyname(slave)
    text = (
        f'[gateway]\nbed_id = "ICU-T"\nregistry_path = "{tmp_path / "r.json"}"\n'
        f'[[devices]]\nid = "toy-1"\nprotocol = "toy"\nport = "{port}"\nexclusive = false\n'
    )
    gw = Gateway(parse_config(text), notifier=Notifier({}), outputs=[MemoryOutput("m")])
    seen: list[Any] = []
    gw.subscribers.append(seen.append)
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        async with asyncio.timeout(5):
            while not gw.links["toy-1"].connected:
                await asyncio.sleep(0.02)
            os.write(master, b"TOY HR=88\n")
            while not any(isinstance(r, Observation) for r in seen):
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await runner
        os.close(master)
        os.close(slave)
    obs = next(r for r in seen if isinstance(r, Observation))
    assert (obs.metric, obs.value, obs.device_id, obs.bed_id, obs.quality) == (
        "MDC_ECG_HEART_RATE", 88.0, "toy-1", "ICU-T", "valid",
    )  # fmt: skip
    assert gw.stats()["links"]["toy-1"]["frames_ok"] == 1
