"""The Masimo family's descriptor (drivers/family.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from drivers.family import CodecSettings, DeviceFamily, cached_table
from drivers.masimo.terms import masimo_terms
from drivers.serial.line import SerialLine

if TYPE_CHECKING:
    from appliance.core.clock import Clock
    from drivers.codec import Codec

__all__ = ["FAMILY"]


def _codec(protocol: str, device_id: str, clock: Clock, settings: CodecSettings) -> Codec:
    from drivers.masimo.codec import MasimoCodec  # no clock: the device sends its own time

    return MasimoCodec(device_id)


_terms, _table = cached_table(masimo_terms)

FAMILY: Final = DeviceFamily(
    name="masimo",
    protocols=("masimo",),
    codec=_codec,
    transports=(SerialLine(),),
    terms=_terms,
    table=_table,
    invalid_flags=frozenset(
        {
            "sensor_off",
            "no_sensor",
            "defective_sensor",
            "unrecognized_sensor",
            "incompatible_sensor",
            "no_cable",
            "cable_expired",
            "incompatible_cable",
            "unrecognized_cable",
            "defective_cable",
            "sensor_calibrating",
            "sensor_expired",
        }
    ),
    questionable_flags=frozenset(
        {
            "low_perfusion",
            "low_signal_iq",
            "pulse_search",
            "interference",
            "ambient_light",
            "spco_low_confidence",
            "spmet_low_confidence",
            "emitter_temperature",
            "sensor_current_limit",
        }
    ),
    simulator="hil.line_sims:masimo",
    summary="Masimo SET ASCII 1",
)
