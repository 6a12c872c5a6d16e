"""Bluetooth LE health-profile drivers: sans-IO characteristic codecs plus the bleak link."""
