"""The Nonin family's descriptor (drivers/family.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from drivers.family import CodecSettings, DeviceFamily, cached_table
from drivers.nonin.terms import nonin_terms
from drivers.serial.line import SerialLine

if TYPE_CHECKING:
    from appliance.core.clock import Clock
    from drivers.codec import Codec

__all__ = ["FAMILY", "SPOT_FORMAT"]

SPOT_FORMAT: Final = 13  # SmartPoint spot-check records (drivers/nonin/spot.py)


def _codec(protocol: str, device_id: str, clock: Clock, settings: CodecSettings) -> Codec:
    # `nonin` is format #8, the display-value stream most bedside integrations use.
    fmt = 8 if protocol == "nonin" else int(protocol.removeprefix("nonin-"))
    if fmt == SPOT_FORMAT:
        from drivers.nonin.spot import NoninSpotCodec

        return NoninSpotCodec(device_id)  # records carry the device's own time: no clock needed
    from drivers.nonin.codec import NoninCodec

    return NoninCodec(device_id, fmt)  # type: ignore[arg-type]  # fmt is one of the protocols' 2, 7, 8


_terms, _table = cached_table(nonin_terms)

FAMILY: Final = DeviceFamily(
    name="nonin",
    protocols=("nonin", "nonin-2", "nonin-7", "nonin-8", "nonin-13"),
    codec=_codec,
    transports=(SerialLine(),),
    terms=_terms,
    table=_table,
    invalid_flags=frozenset({"missing", "sensor_off"}),
    # A #13 spot check without SmartPoint's high-quality mark (SPA) is a value, but a weaker one.
    questionable_flags=frozenset({"low_perfusion", "marginal_perfusion", "artifact", "out_of_track", "not_smartpoint"}),
    simulator="hil.line_sims:nonin",
    summary="Nonin formats #2, #7, #8 (nonin = #8) and #13 spot-check records",
)
