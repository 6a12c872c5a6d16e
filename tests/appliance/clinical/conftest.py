from tests.integration.conftest import pki

__all__ = ["pki"]
