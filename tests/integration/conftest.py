import pytest

from hil.broker import Broker, Pki, make_pki
from tests.integration.helpers import bench

__all__ = ["bench", "broker", "pki"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path, pki):
    b = Broker(tmp_path, pki)
    b.start()
    yield b
    b.stop()
