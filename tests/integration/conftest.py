from tests.integration.helpers import bench

__all__ = ["bench"]
