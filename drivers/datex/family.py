"""The GE S/5 (Datex-Ohmeda) family's descriptor (drivers/family.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from appliance.core.terms import Term
from drivers.datex.terms import datex_terms
from drivers.family import CodecSettings, DeviceFamily, cached_table
from drivers.serial.line import LineRule, SerialLine

if TYPE_CHECKING:
    from appliance.core.clock import Clock
    from drivers.codec import Codec

__all__ = ["FAMILY"]


def _codec(protocol: str, device_id: str, clock: Clock, settings: CodecSettings) -> Codec:
    from drivers.datex.codec import DatexCodec

    return DatexCodec(device_id, clock)  # the re-request after silence runs on this clock


_LINE: Final = (
    LineRule("baud", (19200, 115200), "GE S/5 runs at 19200 (or 115200 on CARESCAPE)"),
    LineRule("bytesize", (8,), "GE S/5 is 8E1"),
    LineRule("parity", ("E",), "GE S/5 is 8E1 (even parity cannot be changed on the monitor)"),
    LineRule("stopbits", (1.0,), "GE S/5 is 8E1"),
    LineRule("rtscts", (True,), "GE S/5 needs RTS/CTS hardware handshake"),
    LineRule("xonxoff", (False,), "GE S/5 sends binary records: XON/XOFF must be off"),
)
_terms, _table = cached_table(lambda: datex_terms(Term))

FAMILY: Final = DeviceFamily(
    name="datex",
    protocols=("datex",),
    codec=_codec,
    transports=(SerialLine({"datex": _LINE}),),
    terms=_terms,
    table=_table,
    invalid_flags=frozenset({"missing", "sensor_calibrating", "not_updated", "not_calibrated", "measurement_off"}),
    questionable_flags=frozenset({"artifact", "discontinuity", "over_range", "under_range"}),
    simulator="hil.line_sims:datex",
    summary="GE S/5 / CARESCAPE computer interface",
)
