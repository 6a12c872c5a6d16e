"""A quiet host for the tests whose verdict is a measured time or rate.

A test run may build images in the background (tests/image/conftest.py); their writeback
stalls every fsync on the machine, CPU priority or not (a CI run's end-to-end benchmark
saw its p95 go from 7 ms to 650 ms beside the arm64 build, its queue benchmark lost
half its commit rate). A test that asks for the `quiet_host` fixture (tests/conftest.py)
waits until whatever registered itself here has finished; the image builds register
(tests/image/conftest.py), and in such a run those tests are also ordered after the
others. Without background work, the fixture does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

__all__ = ["QUIET", "QUIET_FIXTURE"]

QUIET = pytest.StashKey[Callable[[], None]]()  # blocks until no background work runs
QUIET_FIXTURE = "quiet_host"
