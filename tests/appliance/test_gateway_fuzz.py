"""Gateway-level fuzzing: hostile HL7 through the codec, the normalizer and the alarm path.

Not a codec fuzz test: every generated stream goes through what the gateway does
with a connection's bytes (Hl7Codec.feed -> Gateway.handle -> alarm circuit and
sinks), and the invariants are the product's:
- no exception escapes, for any bytes;
- no chunk holds the loop beyond the loop-lag bound;
- alarm state is changed only by valid, in-range observations;
- nothing is lost silently: every reading the codec emits becomes an
  observation or is counted as unmapped, and every observation reaches the sinks.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import parse_config
from appliance.core.clock import MonotonicUTC
from appliance.core.model import Observation, Reading, Record
from appliance.gateway import Gateway
from appliance.looplag import LagSettings
from appliance.sdnotify import Notifier
from appliance.sinks import MemorySink
from drivers.hl7.codec import Hl7Codec
from drivers.hl7.mllp import frame
from rules.outputs import MemoryOutput
from rules.states import AlarmState

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hl7"
SEEDS = [p.read_bytes() for p in sorted(FIXTURES.glob("pcd0*.hl7"))]
HOSTILE_NUMBERS = [b"NaN", b"inf", b"-inf", b"1e400", b"-1e400", b"126", b"-5", b"509", b"1e9", b"0x10", b""]
LAG_BOUND_S = LagSettings().bound_s


def _gateway(tmp: Path) -> Gateway:
    config = parse_config(
        f"""
[gateway]
bed_id = "ICU-F"
registry_path = "{tmp / "registry.json"}"
[[devices]]
id = "hl7-1"
protocol = "hl7"
port = "tcp://127.0.0.1:0"
"""
    )
    return Gateway(config, notifier=Notifier({}), outputs=[MemoryOutput("buzzer")])


@st.composite
def hostile_streams(draw: st.DrawFn) -> list[bytes]:
    """A framed stream of mutated real messages, cut into arbitrary chunks."""
    stream = bytearray()
    for _ in range(draw(st.integers(1, 4))):
        segments = draw(st.sampled_from(SEEDS)).replace(b"\n", b"\r").split(b"\r")
        mutated = []
        for seg in segments:
            fields = seg.split(b"|")
            if fields[0] == b"OBX" and len(fields) > 5:
                choice = draw(st.integers(0, 5))
                if choice == 1:
                    fields[5] = draw(st.sampled_from(HOSTILE_NUMBERS))
                elif choice == 2:
                    fields[4] = b".".join([b"1"] * draw(st.integers(1, 5000)))
                elif choice == 3:
                    fields += [b""] * (15 - len(fields))
                    fields[14] = draw(st.sampled_from([b"00010101000000+1400", b"99991231235959-1400", b"2026"]))
            mutated.append(b"|".join(fields))
        if draw(st.booleans()):
            # Many rows: a long message of repeated observations.
            obx = next((s for s in mutated if s.startswith(b"OBX|") and b"|NM|" in s), None)
            if obx is not None:
                mutated += [obx] * draw(st.integers(0, 3000))
        message = b"\r".join(mutated)
        noise = draw(st.binary(max_size=64))
        at = draw(st.integers(0, len(message)))
        if draw(st.booleans()):
            message = message[:at] + noise + message[at:]
        stream += frame(message)
        if draw(st.booleans()):
            stream += draw(st.binary(max_size=32))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    return [bytes(stream[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


def _physiological(gw: Gateway) -> dict[tuple[str, str], AlarmState]:
    return {k: a.state for k, a in gw.alarms.state.alarms.items() if a.rule.kind != "technical"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunks=hostile_streams())
def test_hostile_hl7_through_the_whole_gateway_keeps_the_invariants(tmp_path_factory: Any, chunks: list[bytes]) -> None:
    gw = _gateway(tmp_path_factory.mktemp("gw"))
    sink = MemorySink(max_records=10**7)
    gw.sinks = [sink]
    dev = gw.config.devices[0]
    codec = Hl7Codec(dev.id, MonotonicUTC())
    readings = 0
    before: dict[tuple[str, str], AlarmState] = {}

    def snapshot(record: Record) -> None:
        before.clear()
        before.update(_physiological(gw))

    def check(record: Record) -> None:
        if isinstance(record, Observation) and record.quality == "invalid":
            assert _physiological(gw) == before, f"invalid {record.metric}={record.value} changed alarm state"

    gw.subscribers.insert(0, snapshot)
    gw.subscribers.append(check)
    for chunk in chunks:
        started = time.perf_counter()
        events = codec.feed(chunk)
        for event in events:
            readings += isinstance(event, Reading)
            gw.handle(dev, event)
        held_s = time.perf_counter() - started
        assert held_s < LAG_BOUND_S, f"one chunk of {len(chunk)} bytes held the loop {held_s * 1000:.0f} ms"
    observations = [r for r in sink.records if isinstance(r, Observation)]
    assert readings == len(observations) + sum(gw.normalizer.unmapped.values())
    assert gw.counts["observation"] == len(observations)
