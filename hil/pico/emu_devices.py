"""Masimo ASCII 1 lines and Nonin #2/#7/#8 packets on the Pico (MicroPython).

The byte layouts of hil/masimo_sim.py and hil/nonin_sim.py (shared/protocols/
masimo-ascii.md, nonin.md), written again without datetime or dataclasses;
tests/hil/pico/test_emulators.py checks they are the same bytes.
"""

TYPE_CHECKING = False  # see emu_scenarios
if TYPE_CHECKING:
    from emu_scenarios import Vitals

MASIMO_VARIANTS = ("rad8", "radical5", "radical7", "rad7")
_SERIAL = "0000056661"


def _exc(v: "Vitals", variant: str) -> str:
    exc = 0x800  # Masimo SET running
    if v[3]:
        exc |= 0x020 | 0x008
    if v[4]:
        exc |= 0x004
    width = {"radical5": 3, "rad7": 7}.get(variant, 6)
    return ("{:0" + str(width) + "X}").format(exc)


def _masimo_fields(variant: str, values: tuple[str, str, str, str], alarm: int) -> list[str]:
    spo2, bpm, pi, exc = values
    if variant == "radical5":
        return ["SPO2=" + spo2 + "%", "BPM=" + bpm, "PI=" + pi + "%", f"ALARM={alarm & 0xFF:02X}", "EXC=" + exc]
    head = ["SN=" + _SERIAL, "SPO2=" + spo2 + "%", "BPM=" + bpm]
    if variant == "rad8":
        tail = ["SPCO=--.-%", "SPMET=--.-%", "DESAT=--", "PIDELTA=+--", f"ALARM={alarm:04X}", "EXC=" + exc]
        return head + ["PI=" + pi + "%"] + tail
    if variant == "radical7":
        tail = ["SPCO=01.0%", "SPMET=00.8%", "DESAT=00", "PIDELTA=+00", "PVI=014", f"ALARM={alarm:04X}", "EXC=" + exc]
        return head + ["PI=" + pi + "%"] + tail
    tail = ["SPCO=--%", "SPMET=00.9%", "SPHB=13.1", "SPOC=18", "RESVD=---", "DESAT=00", "PIDELTA=+00", "PVI=015"]
    return head + ["PI=" + pi] + tail + [f"ALARM={alarm:06X}", "EXC=" + exc, "EXC1=00000000"]


def masimo_line(variant: str, when: tuple[int, int, int, int, int, int], v: "Vitals", alarm: int = 0) -> bytes:
    """One CR LF line; `when` = (year, month, day, hour, minute, second) of the device clock."""
    off = v[3]
    spo2 = "---" if off else f"{v[0]:03.0f}"
    bpm = "---" if off else f"{v[1]:03.0f}"
    pi = "--.--" if off else f"{v[2]:05.2f}"
    y, mo, d, h, mi, s = when
    stamp = f"{mo:02d}/{d:02d}/{y % 100:02d} {h:02d}:{mi:02d}:{s:02d}"
    fields = _masimo_fields(variant, (spo2, bpm, pi, _exc(v, variant)), alarm)
    prefix = b"\x00\x00" if variant == "rad7" else b""
    return prefix + (stamp + " " + " ".join(fields) + "\r\n").encode()


def _values(v: "Vitals") -> tuple[int, int]:
    if v[3]:
        return 511, 127
    return int(v[1]), int(v[0])


def nonin_packet(data_format: int, v: "Vitals", low_battery: bool = False, pleth_phase: int = 0) -> bytes:
    """One #8 packet (4 bytes) or one #2/#7 packet (25 frames of 5 bytes)."""
    hr, spo2 = _values(v)
    if data_format == 8:
        status1 = 0x80 | (0x10 if v[4] else 0) | ((hr >> 7) & 0x03)
        status2 = (0x08 if v[3] else 0) | (0x01 if low_battery else 0)
        return bytes([status1, hr & 0x7F, spo2 & 0x7F, status2])
    hr_msb, hr_lsb = (hr >> 7) & 0x03, hr & 0x7F
    floats = [0] * 25
    floats[0], floats[1], floats[2], floats[3] = hr_msb, hr_lsb, spo2, 0x94
    floats[7] = 0x01 if low_battery else 0
    for i in (8, 9, 10, 15, 16):
        floats[i] = spo2
    for i in (13, 19, 21):
        floats[i], floats[i + 1] = hr_msb, hr_lsb
    out = bytearray()
    for i in range(25):
        status = 0x80 | (0x01 if i == 0 else 0) | (0x08 if v[3] else 0)
        if i % 12 < 3:
            status |= 0x04 if v[4] else 0x02  # red or green pulse indicator
        pleth = (pleth_phase + i * 10) % 256
        frame = [0x01, status, pleth, floats[i]] if data_format == 2 else [status, pleth >> 1, pleth, floats[i]]
        out += bytes(frame + [sum(frame) & 0xFF])
    return bytes(out)
