"""Issue #14 finding 11: `bedside decode` exits 1 with one line when nothing in the
input decodes (it exited 0); a file with at least one record still exits 0.
Also the HL7 file path: bare and MLLP-framed files both decode (finding 3)."""

import subprocess
import sys
from pathlib import Path

import pytest

from hil.nonin_sim import nonin_packet
from hil.scenarios import Vitals

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "hl7"


def bedside(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("protocol", "data", "bad"),
    [
        ("masimo", b"garbage line\r\nmore garbage\r\n", 2),
        ("nonin-2", bytes(range(256)) * 4, None),
        ("hl7", b"", 0),
        ("hl7", b"not hl7 at all\r\n", 1),
        ("ble-heart-rate", b"zz\n", 1),
    ],
)
def test_nothing_decoded_exits_2_with_one_line(protocol, data, bad):
    res = bedside("decode", "--protocol", protocol, "-", stdin=data)
    assert res.returncode == 2, res.stderr  # bad input: the README's exit-code rule
    (line,) = res.stderr.decode().splitlines()
    assert line.startswith(f"bedside: <stdin>: nothing decoded: {len(data)} bytes, ")
    if bad is not None:
        assert line.endswith(f", {bad} bad frames")
    assert "Traceback" not in res.stderr.decode()


def test_one_good_record_among_noise_exits_0():
    data = b"\x00\x01\x02" + nonin_packet(2, Vitals(97, 70, 3.0))
    res = bedside("decode", "--protocol", "nonin-2", "-", stdin=data)
    assert res.returncode == 0 and "frames ok" in res.stderr.decode()


@pytest.mark.parametrize("framed", [False, True])
def test_hl7_files_decode_bare_or_framed(framed):
    raw = (EXAMPLES / "pcd01-oru-r01-acme-bp-wcm.hl7").read_bytes()
    data = b"\x0b" + raw + b"\x1c\r" if framed else raw
    res = bedside("decode", "--protocol", "hl7", "-", stdin=data)
    assert res.returncode == 0 and res.stdout.count(b'"type":"observation"') == 3
