"""Every benchmark here states a measured time or rate: each is measured on a quiet
host (tests/quiet.py), after the image builds a full run starts in the background."""

import pytest


@pytest.fixture(autouse=True)
def _measured_on_a_quiet_host(quiet_host: None) -> None:
    """Requesting `quiet_host` also orders the benchmarks after the other tests."""
