"""`bedside decode`: raw device bytes in, canonical JSON lines out.

Replays a capture through the same codec and normalizer the gateway uses. Device
times are converted with `--device-tz`; clock-skew substitution is off (a capture
is old by definition), so `time` is the device's time where it sent one and the
decode time otherwise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import BinaryIO, Final, TextIO

from appliance.core.clock import Clock, MonotonicUTC
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent, to_json_line
from appliance.normalize import DeviceContext, Normalizer
from drivers.family import CodecSettings
from drivers.registry import make_codec

__all__ = ["DecodeSummary", "decode_stream"]

CHUNK_BYTES: Final = 4096


@dataclass(slots=True)
class DecodeSummary:
    bytes_in: int = 0
    frames_ok: int = 0
    frames_bad: int = 0
    observations: int = 0
    technical: int = 0
    unmapped: Counter[str] = field(default_factory=Counter)

    @property
    def nothing_decoded(self) -> bool:
        return self.frames_ok == 0 and self.observations == 0

    def line(self) -> str:
        if self.nothing_decoded:
            return f"nothing decoded: {self.bytes_in} bytes, {self.frames_bad} bad frames"
        text = (
            f"frames ok {self.frames_ok}, bad {self.frames_bad}; "
            f"{self.observations} observations, {self.technical} technical events"
        )
        if self.unmapped:
            text += "; no MDC term for " + ", ".join(f"{k} x{v}" for k, v in sorted(self.unmapped.items()))
        return text


def decode_stream(
    protocol: str,
    source: BinaryIO,
    out: TextIO,
    tz: tzinfo,
    *,
    device_id: str = "decode",
    bed_id: str = "unassigned",
    clock: Clock | None = None,
) -> DecodeSummary:
    clock = clock or MonotonicUTC()
    codec = make_codec(protocol, device_id, clock, CodecSettings(capture=True))  # a file, not a live port
    normalizer = Normalizer(max_clock_skew_s=None)
    ctx = DeviceContext(device_id=device_id, protocol=protocol, bed_id=bed_id, tz=tz)
    summary = DecodeSummary()

    def chunks() -> Iterator[list[DeviceEvent]]:
        while chunk := source.read(CHUNK_BYTES):
            summary.bytes_in += len(chunk)
            yield codec.feed(chunk)
        finish = getattr(codec, "finish", None)  # codecs holding a last unterminated message
        if finish is not None:
            yield finish()

    for events in chunks():
        for event in events:
            received = clock.now()
            if isinstance(event, Reading):
                obs, _ = normalizer.normalize(event, ctx, received)
                if obs is not None:
                    summary.observations += 1
                    out.write(to_json_line(obs) + "\n")
            elif isinstance(event, TechnicalEvent):
                summary.technical += 1
                out.write(to_json_line(replace(event, time=received, bed_id=bed_id)) + "\n")
    summary.frames_ok = codec.stats.frames_ok
    summary.frames_bad = codec.stats.frames_bad
    summary.unmapped = normalizer.unmapped
    return summary
