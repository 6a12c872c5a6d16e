"""A simulated BLE radio behind bleak's public API (`backend=`), for tests, the demo and the bench.

`SimRadio` holds simulated peripherals (GATT servers with handles, CCCDs,
notifications and confirmed indications). `radio.backend()` returns scanner and
client classes — subclasses of bleak's `BaseBleakScanner` / `BaseBleakClient` —
that the gateway's `BleLink` passes to `BleakScanner` / `BleakClient` exactly as
it would the BlueZ backend. A peripheral can leave range (the connected client
sees an unsolicited disconnect, later connects fail) and come back.

No radio is involved: ATT is modelled, not transmitted. What the link exercises
is bleak's own client and scanner front ends, our backend, and the timing of
notifications arriving as separate loop callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError

from drivers.ble.link import BleBackend

__all__ = ["SimChar", "SimPeripheral", "SimRadio"]

CCCD = "00002902-0000-1000-8000-00805f9b34fb"


@dataclass(slots=True)
class SimChar:
    uuid: str
    properties: list[CharacteristicPropertyName]
    value: bytes = b""
    on_write: Callable[[bytes], None] | None = None
    handle: int = 0


@dataclass(slots=True)
class SimService:
    uuid: str
    chars: list[SimChar] = field(default_factory=list)
    handle: int = 0


class SimPeripheral:
    """Device side of one simulated GATT server."""

    def __init__(self, address: str, name: str, services: list[SimService], rssi: int = -60) -> None:
        self.address = address
        self.name = name
        self.services = services
        self.rssi = rssi
        self.in_range = True
        self.client: SimClientBase | None = None
        self.connections = 0
        self._subscribed: dict[int, NotifyCallback] = {}
        handle = 1
        self.chars: dict[str, SimChar] = {}
        for service in services:
            service.handle = handle
            handle += 1
            for char in service.chars:
                char.handle = handle + 1  # declaration, value (+ CCCD when notify/indicate)
                handle += 3
                self.chars[char.uuid] = char

    @property
    def connected(self) -> bool:
        return self.client is not None

    def subscribed(self, uuid: str) -> bool:
        return self.chars[uuid].handle in self._subscribed

    # -- what the simulated device does ------------------------------------------------
    def notify(self, uuid: str, data: bytes) -> bool:
        """Queue a notification; True if a subscribed client will get it."""
        callback = self._subscribed.get(self.chars[uuid].handle)
        if callback is None or self.client is None:
            return False
        asyncio.get_running_loop().call_soon(callback, bytearray(data))
        return True

    async def indicate(self, uuid: str, data: bytes) -> bool:
        """Send an indication and wait for the client's confirmation (its callback ran)."""
        if not self.notify(uuid, data):
            return False
        await asyncio.sleep(0)  # the confirmation comes after the client handled the value
        return self.client is not None

    def leave(self) -> None:
        """Out of range: the connection drops without a goodbye."""
        self.in_range = False
        client = self.client
        if client is not None:
            client.dropped()

    def come_back(self) -> None:
        self.in_range = True

    # -- hooks for simulators ----------------------------------------------------------
    def on_connect(self) -> None:
        """Called when a client connects."""

    def on_subscribe(self, uuid: str) -> None:
        """Called when a client enables notifications or indications."""

    # -- what the client backend calls -----------------------------------------------------
    def attach(self, client: SimClientBase) -> None:
        self.client = client
        self.connections += 1
        self._subscribed.clear()
        self.on_connect()

    def detach(self) -> None:
        self.client = None
        self._subscribed.clear()

    def subscribe(self, handle: int, callback: NotifyCallback | None) -> None:
        if callback is None:
            self._subscribed.pop(handle, None)
            return
        self._subscribed[handle] = callback
        for uuid, char in self.chars.items():
            if char.handle == handle:
                self.on_subscribe(uuid)


P = TypeVar("P", bound=SimPeripheral)


class SimRadio:
    def __init__(self) -> None:
        self.peripherals: dict[str, SimPeripheral] = {}

    def add(self, peripheral: P) -> P:
        self.peripherals[peripheral.address.upper()] = peripheral
        return peripheral

    def get(self, address: str) -> SimPeripheral | None:
        return self.peripherals.get(address.upper())

    def backend(self) -> BleBackend:
        radio = self

        class Scanner(SimScannerBase):
            _radio = radio

        class Client(SimClientBase):
            _radio = radio

        return BleBackend(Scanner, Client)


class SimScannerBase(BaseBleakScanner):
    _radio: SimRadio
    ADVERTISING_INTERVAL_S = 0.05

    def __init__(self, detection_callback: Any, service_uuids: list[str] | None, *args: Any, **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._task = asyncio.get_running_loop().create_task(self._advertise())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _advertise(self) -> None:
        while True:
            for peripheral in list(self._radio.peripherals.values()):
                if not peripheral.in_range or peripheral.connected:
                    continue  # a connected peripheral stops advertising
                uuids = [s.uuid for s in peripheral.services]
                if not self.is_allowed_uuid(uuids):
                    continue
                adv = AdvertisementData(
                    local_name=peripheral.name,
                    manufacturer_data={},
                    service_data={},
                    service_uuids=uuids,
                    tx_power=None,
                    rssi=peripheral.rssi,
                    platform_data=(),
                )
                device = self.create_or_update_device(
                    peripheral.address, peripheral.address, peripheral.name, peripheral, adv
                )
                self.call_detection_callbacks(device, adv)
            await asyncio.sleep(self.ADVERTISING_INTERVAL_S)


class SimClientBase(BaseBleakClient):
    _radio: SimRadio

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
        )
        self._peripheral: SimPeripheral | None = None

    @property
    def name(self) -> str:
        return self._peripheral.name if self._peripheral else self.address

    @property
    def mtu_size(self) -> int:
        return 23

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)  # connection set-up takes a few connection intervals
        peripheral = self._radio.get(self.address)
        if peripheral is None or not peripheral.in_range:
            raise BleakDeviceNotFoundError(self.address, f"Device with address {self.address} was not found")
        if peripheral.connected:
            raise BleakError(f"{self.address} is already connected to another central")
        self._peripheral = peripheral
        self.services = self._discover(peripheral)
        peripheral.attach(self)

    def _discover(self, peripheral: SimPeripheral) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for sim_service in peripheral.services:
            service = BleakGATTService(sim_service, sim_service.handle, sim_service.uuid)
            collection.add_service(service)
            for sim_char in sim_service.chars:
                char = BleakGATTCharacteristic(
                    sim_char,
                    sim_char.handle,
                    sim_char.uuid,
                    sim_char.properties,
                    lambda: 20,
                    service,
                )
                collection.add_characteristic(char)
                if {"notify", "indicate"} & set(sim_char.properties):
                    collection.add_descriptor(BleakGATTDescriptor(None, sim_char.handle + 1, CCCD, char))
        return collection

    def dropped(self) -> None:
        """The peripheral went away: an unsolicited disconnect."""
        self._teardown()
        if self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    def _teardown(self) -> None:
        if self._peripheral is not None:
            self._peripheral.detach()
        self._peripheral = None

    async def disconnect(self) -> None:
        self._teardown()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def unpair(self) -> None:
        return None

    @property
    def is_connected(self) -> bool:
        return self._peripheral is not None

    def _char(self, characteristic: BleakGATTCharacteristic) -> SimChar:
        if self._peripheral is None:
            raise BleakError("Not connected")
        sim = characteristic.obj
        assert isinstance(sim, SimChar)
        return sim

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        sim = self._char(characteristic)
        if "read" not in sim.properties:
            raise BleakError(f"{sim.uuid}: read not permitted")
        return bytearray(sim.value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        raise BleakError("descriptor reads are not simulated")

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool) -> None:
        sim = self._char(characteristic)
        if "write" not in sim.properties and "write-without-response" not in sim.properties:
            raise BleakError(f"{sim.uuid}: write not permitted")
        sim.value = bytes(data)
        if sim.on_write is not None:
            sim.on_write(bytes(data))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        raise BleakError("descriptor writes are not simulated")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        sim = self._char(characteristic)
        if not {"notify", "indicate"} & set(sim.properties):
            raise BleakError(f"{sim.uuid}: neither notify nor indicate")
        assert self._peripheral is not None
        self._peripheral.subscribe(sim.handle, callback)  # the CCCD write

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        sim = self._char(characteristic)
        assert self._peripheral is not None
        self._peripheral.subscribe(sim.handle, None)
