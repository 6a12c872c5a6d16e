"""Fixtures every test directory may use."""

import pytest

from tests.quiet import QUIET


@pytest.fixture
def quiet_host(request: pytest.FixtureRequest) -> None:
    """Until no background work (an image build) runs beside the test: see tests/quiet.py."""
    wait = request.config.stash.get(QUIET, None)
    if wait is not None:
        wait()
