"""The Dräger MEDIBUS family's descriptor (drivers/family.py) and its model line profiles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from drivers.family import CodecSettings, DeviceFamily, cached_table
from drivers.medibus.terms import medibus_terms
from drivers.serial.line import LineRule, SerialLine

if TYPE_CHECKING:
    from appliance.core.clock import Clock
    from drivers.codec import Codec

__all__ = ["FAMILY", "MEDIBUS_PROFILES"]

# Dräger model -> (baud, parity) the model's MEDIBUS port runs at (medibus.md §2).
MEDIBUS_PROFILES: Final[dict[str, tuple[int, str]]] = {
    "evita4": (19200, "E"),
    "evitaxl": (19200, "N"),
    "v500": (19200, "N"),
    "apollo": (9600, "E"),
}


def _codec(protocol: str, device_id: str, clock: Clock, settings: CodecSettings) -> Codec:
    from drivers.medibus.codec import MedibusCodec

    return MedibusCodec(device_id, clock)  # polls, NOP keep-alive and timeouts run on this clock


_XONXOFF: Final = LineRule("xonxoff", (False,), "MEDIBUS uses DC1/DC3 itself (reversed): XON/XOFF must be off")


def _model_rules(model: str, baud: int, parity: str) -> tuple[LineRule, ...]:
    why = f"Dräger {model} MEDIBUS profile is {baud} 8{parity}1"
    return LineRule("baud", (baud,), why), LineRule("parity", (parity,), why), _XONXOFF


_terms, _table = cached_table(medibus_terms)

FAMILY: Final = DeviceFamily(
    name="medibus",
    protocols=("medibus", *(f"medibus-{model}" for model in MEDIBUS_PROFILES)),
    codec=_codec,
    transports=(
        SerialLine(
            {"medibus": (_XONXOFF,)}
            | {f"medibus-{model}": _model_rules(model, *line) for model, line in MEDIBUS_PROFILES.items()}
        ),
    ),
    terms=_terms,
    table=_table,
    simulator="hil.line_sims:medibus",
    summary="Dräger MEDIBUS (medibus-MODEL fixes the line profile)",
)
