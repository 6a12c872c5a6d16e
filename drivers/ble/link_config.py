"""What a BLE link is given: timing, the bleak backend, and where its record cursor lives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from drivers.ble.family import BleTiming

__all__ = ["BleBackend", "BleTiming", "MemoryCursor", "RecordCursor"]


class RecordCursor(Protocol):
    """Where the last stored-record sequence number per device is kept (blocking I/O)."""

    def last_record(self, device_id: str) -> int | None: ...

    def set_last_record(self, device_id: str, seq: int) -> None: ...


class MemoryCursor:
    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}

    def last_record(self, device_id: str) -> int | None:
        return self.seqs.get(device_id)

    def set_last_record(self, device_id: str, seq: int) -> None:
        self.seqs[device_id] = seq


@dataclass(frozen=True, slots=True)
class BleBackend:
    """bleak backend classes; None = the platform's (BlueZ on the box)."""

    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None
