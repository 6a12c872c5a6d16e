"""[alarms] coproc_* keys: the alarm co-processor output's settings (rules/outputs/coproc.py).

Apart from the output so that reading a config imports no serial code.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.core.settings import setting

__all__ = ["CoprocSettings"]


@dataclass(frozen=True, slots=True)
class CoprocSettings:
    # Serial port of the co-processor (a Pico on a UART, docs/coproc.md); empty = off.
    coproc_port: str = setting("")
    coproc_baud: int = setting(115200, choices=(9600, 19200, 38400, 57600, 115200))
    # Heartbeats go out this often; the firmware sounds after 3 s without one.
    coproc_heartbeat_s: float = setting(0.5, min=0.05, max=1.0)
    # No valid reply this long: the co-processor is missing (a technical alarm).
    coproc_answer_timeout_s: float = setting(2.0, min=0.2, max=30.0)
    # Ask the co-processor to play the highest active alarm's pattern too.
    coproc_mirror: bool = setting(True)
    # Firmware shipped in the image; a co-processor with another version is updated
    # from here over its raw REPL at start. Empty = never update, only report.
    coproc_firmware_dir: str = setting("")
    # The version expected when coproc_firmware_dir is empty.
    coproc_version: str = setting("1.0.0", min_len=1)
