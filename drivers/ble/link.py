"""One BLE device link on bleak's public API: find, connect, subscribe, catch up, survive.

The link finds its device by address or by the profile's advertised service,
connects, reads the features and battery level, sets the device clock from the
gateway's (Current Time, where the device lets us write it), subscribes to the
profile's characteristics, and for profiles with a record store fetches every
record newer than the last one it received (the sequence number is persisted
through a `RecordCursor`, the device registry on the box). Values are decoded
and handed to `emit` synchronously in the notification callback, so the alarm
path waits on nothing; the cursor is written from the link's own task through a
thread. Reconnects back off exponentially with jitter.

The lifecycle is `LinkState` plus one transition table (`TRANSITIONS`); the
state changes only in `BleLink._move`. What to fetch and what the cursor may
become is decided by `drivers.ble.catchup.CatchUp` (pure, tested with vectors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Final

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from appliance.core.backoff import Backoff
from appliance.core.model import DeviceEvent, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from drivers.ble.catchup import CatchUp, Offer, Settled, racp_outcome
from drivers.ble.codec import MeasurementStream
from drivers.ble.glucose import racp_abort
from drivers.ble.link_config import BleBackend, BleTiming, MemoryCursor, RecordCursor
from drivers.ble.link_machine import TRANSITIONS, LinkInput, LinkState, step
from drivers.ble.numbers import BleDecodeError, encode_current_time
from drivers.ble.profiles import BATTERY_LEVEL, CURRENT_TIME, RACP, Profile

__all__ = [
    "TRANSITIONS",
    "BleBackend",
    "BleLink",
    "BleTiming",
    "LinkInput",
    "LinkState",
    "MemoryCursor",
    "RecordCursor",
    "step",
]

log = logging.getLogger(__name__)
_DEFAULT_TIMING: Final = BleTiming()
_PLATFORM_BACKEND: Final = BleBackend()


class _Lost(Exception):
    """The device went away mid-procedure."""


class BleLink:
    def __init__(
        self,
        device_id: str,
        profile: Profile,
        address: str | None,
        emit: Callable[[DeviceEvent], None],
        *,
        timing: BleTiming = _DEFAULT_TIMING,
        backend: BleBackend = _PLATFORM_BACKEND,
        cursor: RecordCursor | None = None,
        device_tz: tzinfo = UTC,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.device_id = device_id
        self.profile = profile
        self.address = address
        self._emit = emit
        self._timing = timing
        self._backend = backend
        self._cursor = cursor or MemoryCursor()
        self._tz = device_tz
        self._now = now
        self._stream = MeasurementStream(device_id, timing.low_battery_pct)
        self.stats = self._stream.stats
        self._backoff = Backoff(timing.link.reopen_min_s, timing.link.reopen_max_s)
        self.state = LinkState.SEARCHING  # the initial state; every later change is a `_move`
        self.connected = False
        self._records = CatchUp()
        self._racp_answered = asyncio.Event()
        self._racp_outcomes: list[str] = []
        self._cursor_loaded = False
        self.radio_problem = ""  # why scanning fails, said once per outage (not every scan)
        self._last_value = 0.0
        self._lost = asyncio.Event()
        self._session_connected = False
        self._persist_task: asyncio.Task[None] | None = None

    @property
    def duplicates(self) -> int:
        """Stored records offered again and skipped."""
        return self._records.duplicates

    def _move(self, event: LinkInput) -> None:
        self.state = step(self.state, event)

    def _technical(self, kind: str, active: bool = True, detail: str = "") -> None:
        self._emit(TechnicalEvent(self.device_id, kind, active=active, detail=detail))

    def _deliver(self, events: list[DeviceEvent]) -> None:
        for event in events:
            self._emit(event)

    async def run(self) -> None:
        """Runs until cancelled; never returns on radio trouble."""
        if not self._cursor_loaded and self.profile.stored_records:
            self._records.cursor = await asyncio.to_thread(self._cursor.last_record, self.device_id)
            self._cursor_loaded = True
        try:
            await self._cycle()
        except asyncio.CancelledError:
            if self.profile.stored_records:
                await self._persist_on_stop()
            raise

    async def _persist_on_stop(self) -> None:
        """On shutdown keep what was delivered: a cursor left behind would make the next
        start fetch (and deliver) those records again."""
        if self._persist_task is not None and not self._persist_task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await self._persist_task
        if self._records.cursor is not None:
            await asyncio.to_thread(self._cursor.set_last_record, self.device_id, self._records.cursor)

    async def _cycle(self) -> None:
        outage_reported = False
        while True:
            self._session_connected = False
            problem = await self._session()  # always ends WAITING (or raises)
            self._deliver(self._stream.flush())
            if self._session_connected:
                outage_reported = False  # a new outage starts now
            if self.profile.continuous and not outage_reported:
                self._technical("disconnected", detail=problem)
                outage_reported = True
            else:
                log.info("%s: %s", self.device_id, problem)
            await asyncio.sleep(self._backoff.next())
            self._move(LinkInput.RETRY)

    async def _session(self) -> str:
        """One find-connect-stream cycle; returns why it ended."""
        device = await self._find()
        if device is None:
            self._move(LinkInput.NOT_FOUND)
            return "not found" + (f" ({self.address})" if self.address else f" (service {self.profile.service:04X})")
        self._move(LinkInput.FOUND)
        self._lost = asyncio.Event()
        client = BleakClient(
            device,
            disconnected_callback=lambda _client: self._lost.set(),
            timeout=self._timing.connect_timeout_s,
            backend=self._backend.client,
        )
        try:
            async with asyncio.timeout(self._timing.connect_timeout_s):
                await client.connect()
        except (BleakError, TimeoutError, OSError) as exc:
            self._move(LinkInput.FAILED)
            return f"connect failed: {exc or type(exc).__name__}"
        try:
            return await self._connected(client, device.address)
        except asyncio.CancelledError:
            if self._records.catching_up:
                # Stopped mid catch-up: what arrived without a hole is delivered (the
                # flush sends a measurement still waiting for its context) and counts.
                self._deliver(self._stream.flush())
            self._records.stop()
            await _disconnect(client)
            raise
        finally:
            self.connected = False
            self._records.disconnected()
            if client.is_connected:
                await _disconnect(client)

    async def _connected(self, client: BleakClient, address: str) -> str:
        """Set up, catch up and watch a connected device; returns why it ended."""
        self._move(LinkInput.CONNECTED)
        self.connected = self._session_connected = True
        self._backoff.reset()
        if self.profile.continuous:
            self._technical("connected", detail=address)
        if self.profile.stored_records:
            self._records.connected()
        try:
            await self._setup(client)
            if self.profile.stored_records:
                await self._subscribe_racp(client)
                await self._catch_up(client)
            else:
                self._move(LinkInput.READY)
            await self._watch(client)
            self._move(LinkInput.LOST)
            return "out of range or switched off"
        except _Lost:
            self._move(LinkInput.LOST)
            return "lost during set-up"
        except (BleakError, BleDecodeError, TimeoutError, OSError) as exc:
            self._move(LinkInput.LOST if self._lost.is_set() else LinkInput.FAILED)
            return f"session failed: {exc or type(exc).__name__}"

    async def _find(self) -> BLEDevice | None:
        try:
            found = await self._scan()
        except (BleakError, OSError) as exc:  # no adapter, BlueZ down: same as not found, said once
            problem = radio_problem(exc)
            if problem != self.radio_problem:
                log.warning("%s: cannot scan for the device: %s", self.device_id, problem)
                self.radio_problem = problem
            return None
        if self.radio_problem:
            log.warning("%s: Bluetooth scanning works again", self.device_id)
            self.radio_problem = ""
        return found

    async def _scan(self) -> BLEDevice | None:
        timeout = self._timing.scan_timeout_s
        scanner = self._backend.scanner
        if self.address:
            if scanner is None:
                return await BleakScanner.find_device_by_address(self.address, timeout=timeout)
            return await BleakScanner.find_device_by_address(self.address, timeout=timeout, backend=scanner)
        service = self.profile.service_uuid

        def matches(_device: BLEDevice, adv: AdvertisementData) -> bool:
            return service in adv.service_uuids

        if scanner is None:
            return await BleakScanner.find_device_by_filter(matches, timeout=timeout, service_uuids=[service])
        return await BleakScanner.find_device_by_filter(
            matches, timeout=timeout, service_uuids=[service], backend=scanner
        )

    async def _setup(self, client: BleakClient) -> None:
        chars = {c.uuid: c for c in client.services.characteristics.values()}
        if self.profile.features is not None:
            features = chars.get(f"0000{self.profile.features:04x}-0000-1000-8000-00805f9b34fb")
            if features is not None and "read" in features.properties:
                log.info("%s: features %s", self.device_id, bytes(await client.read_gatt_char(features)).hex())
        battery = chars.get(BATTERY_LEVEL)
        if battery is not None:
            self._deliver(self._stream.value("battery", bytes(await client.read_gatt_char(battery))))
            if "notify" in battery.properties:
                await client.start_notify(battery, self._callback("battery"))
        clock = chars.get(CURRENT_TIME)
        if clock is not None and "write" in clock.properties:
            local = self._now().astimezone(self._tz).replace(tzinfo=None)
            await client.write_gatt_char(clock, encode_current_time(local), response=True)
        for sub in self.profile.subscriptions:
            char = chars.get(sub.uuid)
            if char is None:
                if sub.characteristic == "glucose-context":
                    continue  # optional in the Glucose profile
                raise BleakError(f"device has no {sub.characteristic} characteristic")
            await client.start_notify(char, self._callback(sub.characteristic))
        if self._lost.is_set():
            raise _Lost

    def _callback(self, name: str) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        # Decoded and delivered here, synchronously: the alarm path waits on nothing.
        def on_value(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self._last_value = asyncio.get_running_loop().time()
            if name == "glucose" and len(data) >= 3:
                self._deliver(self._stored_record(bytes(data)))
            else:
                self._deliver(self._stream.value(name, bytes(data), stored=self._records.catching_up))

        return on_value

    def _stored_record(self, data: bytes) -> list[DeviceEvent]:
        seq = int.from_bytes(data[1:3], "little")
        if self._records.offer(seq) is not Offer.DELIVER:
            return []
        events = self._stream.value("glucose", data, stored=self._records.catching_up)
        # A bad frame is not delivered: its number stays missing, so it is asked for again.
        bad = any(isinstance(e, TechnicalEvent) and e.kind == TechnicalKind.BAD_FRAME for e in events)
        if not bad and self._records.delivered(seq) is Settled.PERSIST:
            self._persist_soon()
        return events

    def _persist_soon(self) -> None:
        # The cursor write is disk I/O: off the loop, one at a time, latest value wins.
        if self._persist_task is None or self._persist_task.done():
            self._persist_task = asyncio.get_running_loop().create_task(self._persist())

    async def _persist(self) -> None:
        written: int | None = None
        while self._records.cursor is not None and self._records.cursor != written:
            written = self._records.cursor
            await asyncio.to_thread(self._cursor.set_last_record, self.device_id, written)

    async def _subscribe_racp(self, client: BleakClient) -> None:
        def on_racp(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            outcome = racp_outcome(bytes(data))
            if outcome is not None:
                self._racp_outcomes.append(outcome)
                self._racp_answered.set()

        await client.start_notify(RACP, on_racp)

    async def _catch_up(self, client: BleakClient) -> None:
        """Ask for every record after the cursor and wait for the procedure to end."""
        self._move(LinkInput.CATCH_UP)
        self._racp_answered = answered = asyncio.Event()
        outcomes: list[str] = []
        self._racp_outcomes = outcomes
        try:
            await client.write_gatt_char(RACP, self._records.request(), response=True)
            in_time = await self._answer_or_loss(answered)
            if not in_time:
                with contextlib.suppress(BleakError, OSError):
                    await client.write_gatt_char(RACP, racp_abort(), response=True)
            end = self._records.finish(answered=in_time, refusal=outcomes[0] if outcomes else "")
            if end.abort:
                log.warning(
                    "%s: stored records not finished in %g s: aborted", self.device_id, self._timing.records_timeout_s
                )
            elif end.refusal:
                log.warning("%s: stored records refused: %s", self.device_id, end.refusal)
        finally:
            self._deliver(self._stream.flush())
        self._persist_soon()
        if self._persist_task is not None:
            await self._persist_task
        self._move(LinkInput.CAUGHT_UP)

    async def _answer_or_loss(self, answered: asyncio.Event) -> bool:
        """Wait for the RACP answer; True = answered in time, `_Lost` if the link went."""
        lost = asyncio.ensure_future(self._lost.wait())
        done = asyncio.ensure_future(answered.wait())
        try:
            finished, _ = await asyncio.wait(
                {lost, done}, timeout=self._timing.records_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
            done.cancel()
        if self._lost.is_set():
            raise _Lost
        return bool(finished)

    async def _watch(self, client: BleakClient) -> None:
        """Wait for the link to go; continuous profiles report silence as `stale`; a gap in
        live stored-record sequence numbers starts another catch-up."""
        loop = asyncio.get_running_loop()
        self._last_value = loop.time()
        stale_after = self._timing.link.stale_after_s
        stale = False
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(stale_after, 1.0) if not self.profile.stored_records else 0.1):
                    await self._lost.wait()
            if self._records.gap and not self._lost.is_set():
                await self._catch_up(client)
            if not self.profile.continuous:
                continue
            quiet = loop.time() - self._last_value >= stale_after
            if quiet and not stale:
                stale = True
                self._technical("stale", detail=f"no notification for {stale_after:g} s")
            elif stale and not quiet:
                stale = False
                self._technical("stale", active=False)
        if stale:
            self._technical("stale", active=False)


async def _disconnect(client: BleakClient) -> None:
    with contextlib.suppress(BleakError, TimeoutError, OSError):
        async with asyncio.timeout(2.0):
            await client.disconnect()


def radio_problem(exc: BaseException) -> str:
    """What an operator should read when scanning fails: BlueZ reached over the D-Bus
    system bus is the usual culprit on a box, not the errno."""
    text = str(exc)
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError) or "org.freedesktop.DBus" in text:
        return "Bluetooth is not available (no BlueZ on the D-Bus system bus: is bluetoothd running?)"
    if "adapter" in text.lower():
        return f"no Bluetooth adapter ({text})"
    return f"Bluetooth scanning failed ({text or type(exc).__name__})"
