"""The image tests' NTP server (hil/timeserver.py): a real chronyd in a network namespace
of its own answers an SNTP query made inside the namespace as a synchronised server with
this machine's time, and nothing outside the namespace reaches it."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import time
from pathlib import Path

import pytest

from hil.timeserver import time_server

NTP_EPOCH_OFFSET = 2_208_988_800  # 1900 -> 1970


def _query() -> tuple[int, int, float]:
    """(leap indicator, stratum, server time - ours) from one SNTP v4 client request."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(b"\x23" + 47 * b"\0", ("127.0.0.1", 123))  # LI 0, version 4, mode 3 (client)
        data, _ = sock.recvfrom(512)
    seconds, fraction = struct.unpack("!II", data[40:48])  # transmit timestamp
    return data[0] >> 6, data[1], seconds - NTP_EPOCH_OFFSET + fraction / 2**32 - time.time()


def test_chronyd_serves_this_machines_time_only_inside_its_namespace(tmp_path: Path) -> None:
    assert os.geteuid() == 0 and shutil.which("chronyd"), "needs root and chronyd (tools/bootstrap test)"
    with time_server(tmp_path / "ntp") as server:
        leap, stratum, offset = server.netns.call(_query)
        assert leap == 0 and stratum == server.stratum  # synchronised: timesyncd accepts it
        assert abs(offset) < 1.0
        with pytest.raises(OSError):  # this machine's own namespace has no NTP server on 127.0.0.1
            _query()
        assert server.proc is not None and server.proc.poll() is None
        name = server.netns.name
    assert name not in os.listdir("/run/netns")  # gone afterwards, chronyd with it
