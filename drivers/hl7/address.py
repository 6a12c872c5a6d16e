"""Listen addresses moved to drivers/address.py (any listener transport); kept for old imports."""

from drivers.address import ListenAddress, parse_listen

__all__ = ["ListenAddress", "parse_listen"]
