"""The IntelliVue family's descriptor (drivers/family.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from appliance.core.terms import Term
from drivers.family import CodecSettings, DeviceFamily, cached_table
from drivers.intellivue.terms import intellivue_terms
from drivers.serial.line import LineRule, SerialLine

if TYPE_CHECKING:
    from appliance.core.clock import Clock
    from drivers.codec import Codec

__all__ = ["FAMILY"]


def _codec(protocol: str, device_id: str, clock: Clock, settings: CodecSettings) -> Codec:
    from drivers.intellivue.codec import IntelliVueCodec

    return IntelliVueCodec(device_id, clock)  # polls, keep-alives and re-association run on this clock


_LINE: Final = (
    LineRule("baud", (115200,), "IntelliVue MIB/RS-232 runs at 115200 8N1"),
    LineRule("parity", ("N",), "IntelliVue MIB/RS-232 runs at 115200 8N1"),
    LineRule("xonxoff", (False,), "IntelliVue frames are binary: XON/XOFF must be off"),
)
_terms, _table = cached_table(lambda: intellivue_terms(Term))

FAMILY: Final = DeviceFamily(
    name="intellivue",
    protocols=("intellivue",),
    codec=_codec,
    transports=(SerialLine({"intellivue": _LINE}),),
    terms=_terms,
    table=_table,
    invalid_flags=frozenset({"missing", "sensor_calibrating", "invalid_measurement", "unavailable", "demo_data"}),
    questionable_flags=frozenset({"questionable_measurement"}),
    simulator="hil.line_sims:intellivue",
    summary="Philips IntelliVue MIB/RS-232",
)
