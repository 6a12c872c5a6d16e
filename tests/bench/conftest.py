"""Every benchmark here states a measured time or rate: each is measured on a quiet
host (tests/quiet.py). In a run that builds images in the background, that is after
the other tests, once no build runs; in a run without image tests, nothing changes."""

import pytest


@pytest.fixture(autouse=True)
def _measured_on_a_quiet_host(quiet_host: None) -> None:
    """Requesting `quiet_host` is what orders (tests/image/conftest.py) and holds them."""
