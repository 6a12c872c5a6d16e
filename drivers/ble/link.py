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

The lifecycle is `LinkState` plus one transition table (`TRANSITIONS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Final, Protocol

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from appliance.core.backoff import Backoff
from appliance.core.model import DeviceEvent, TechnicalEvent
from appliance.core.transitions import TransitionTable
from drivers.ble.codec import MeasurementStream
from drivers.ble.glucose import NO_RECORDS, SUCCESS, RacpOp, decode_racp, racp_abort, racp_report_after, racp_report_all
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
]

log = logging.getLogger(__name__)


class LinkState(enum.Enum):
    SEARCHING = "searching"
    CONNECTING = "connecting"
    SETTING_UP = "setting_up"
    CATCHING_UP = "catching_up"
    STREAMING = "streaming"
    WAITING = "waiting"  # backing off before the next search


class LinkInput(enum.Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    CONNECTED = "connected"
    FAILED = "failed"
    READY = "ready"
    CATCH_UP = "catch_up"
    CAUGHT_UP = "caught_up"
    LOST = "lost"
    RETRY = "retry"


_S, _E = LinkState, LinkInput
_MOVES: Final[dict[tuple[LinkState, LinkInput], LinkState]] = {
    (_S.SEARCHING, _E.FOUND): _S.CONNECTING,
    (_S.SEARCHING, _E.NOT_FOUND): _S.WAITING,
    (_S.CONNECTING, _E.CONNECTED): _S.SETTING_UP,
    (_S.CONNECTING, _E.FAILED): _S.WAITING,
    (_S.SETTING_UP, _E.READY): _S.STREAMING,
    (_S.SETTING_UP, _E.CATCH_UP): _S.CATCHING_UP,
    (_S.SETTING_UP, _E.FAILED): _S.WAITING,
    (_S.SETTING_UP, _E.LOST): _S.WAITING,
    (_S.CATCHING_UP, _E.CAUGHT_UP): _S.STREAMING,
    (_S.CATCHING_UP, _E.FAILED): _S.WAITING,
    (_S.CATCHING_UP, _E.LOST): _S.WAITING,
    (_S.STREAMING, _E.LOST): _S.WAITING,
    (_S.STREAMING, _E.FAILED): _S.WAITING,
    (_S.WAITING, _E.RETRY): _S.SEARCHING,
}
TRANSITIONS: Final = TransitionTable("BLE link", _MOVES)
del _S, _E


def step(state: LinkState, event: LinkInput) -> LinkState:
    """The link drives itself: an unlisted move is a bug (`UnknownTransition`, a RuntimeError)."""
    return TRANSITIONS.next(state, event)


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


@dataclass(frozen=True, slots=True)
class BleTiming:
    scan_timeout_s: float = 10.0
    connect_timeout_s: float = 15.0
    records_timeout_s: float = 30.0  # a stored-records procedure must finish within this
    stale_after_s: float = 5.0  # continuous profiles only
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    low_battery_pct: int = 20


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
        timing: BleTiming = BleTiming(),
        backend: BleBackend = BleBackend(),
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
        self._backoff = Backoff(timing.reconnect_min_s, timing.reconnect_max_s)
        self.state = LinkState.SEARCHING
        self.connected = False
        self.duplicates = 0  # stored records offered again and skipped
        self._last_seq: int | None = None
        self._floor: int | None = None  # cursor when this connection began
        self._seen: set[int] = set()  # sequence numbers received on this connection
        self._gap = asyncio.Event()  # a live record skipped over some: fetch them
        self._racp_answered = asyncio.Event()
        self._racp_responses: list[str] = []
        self._cursor_loaded = False
        self._catching_up = False
        self._last_value = 0.0
        self._lost = asyncio.Event()
        self._session_connected = False

    def _to(self, event: LinkInput) -> None:
        self.state = step(self.state, event)

    def _technical(self, kind: str, active: bool = True, detail: str = "") -> None:
        self._emit(TechnicalEvent(self.device_id, kind, active=active, detail=detail))

    async def run(self) -> None:
        """Runs until cancelled; never returns on radio trouble."""
        if not self._cursor_loaded and self.profile.stored_records:
            self._last_seq = await asyncio.to_thread(self._cursor.last_record, self.device_id)
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
        if self._last_seq is not None:
            await asyncio.to_thread(self._cursor.set_last_record, self.device_id, self._last_seq)

    async def _cycle(self) -> None:
        outage_reported = False
        while True:
            self.state = LinkState.SEARCHING
            self._session_connected = False
            problem = await self._session()
            for event in self._stream.flush():
                self._emit(event)
            if self._session_connected:
                outage_reported = False  # a new outage starts now
            if self.profile.continuous and not outage_reported:
                self._technical("disconnected", detail=problem)
                outage_reported = True
            else:
                log.info("%s: %s", self.device_id, problem)
            await asyncio.sleep(self._backoff.next())
            self._to(LinkInput.RETRY)

    async def _session(self) -> str:
        """One find-connect-stream cycle; returns why it ended."""
        device = await self._find()
        if device is None:
            self._to(LinkInput.NOT_FOUND)
            return "not found" + (f" ({self.address})" if self.address else f" (service {self.profile.service:04X})")
        self._to(LinkInput.FOUND)
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
            self._to(LinkInput.FAILED)
            return f"connect failed: {exc or type(exc).__name__}"
        self._to(LinkInput.CONNECTED)
        self.connected = self._session_connected = True
        self._backoff.reset()
        if self.profile.continuous:
            self._technical("connected", detail=device.address)
        if self.profile.stored_records:
            # Records that arrive live before the catch-up ends must not move the
            # request's starting point (or the persisted cursor) past a gap.
            self._floor = self._last_seq
            self._seen = set()
            self._gap = asyncio.Event()
            self._catching_up = True
        try:
            await self._setup(client)
            if self.profile.stored_records:
                self._to(LinkInput.CATCH_UP)
                await self._subscribe_racp(client)
                await self._catch_up(client)
                self._to(LinkInput.CAUGHT_UP)
            else:
                self._to(LinkInput.READY)
            await self._watch(client)
            self._to(LinkInput.LOST)
            return "out of range or switched off"
        except _Lost:
            self._to(LinkInput.LOST)
            return "lost during set-up"
        except (BleakError, BleDecodeError, TimeoutError, OSError) as exc:
            self._to(LinkInput.LOST if self._lost.is_set() else LinkInput.FAILED)
            return f"session failed: {exc or type(exc).__name__}"
        except asyncio.CancelledError:
            if self._catching_up:
                # Stopped mid catch-up: what arrived without a hole is delivered (the
                # flush sends a measurement still waiting for its context) and counts.
                self._deliver(self._stream.flush())
                safe = self._contiguous()
                if safe is not None and safe > (self._last_seq or 0):
                    self._last_seq = safe
            with contextlib.suppress(BleakError, TimeoutError, OSError):
                async with asyncio.timeout(2.0):
                    await client.disconnect()
            raise
        finally:
            self.connected = False
            self._catching_up = False
            if client.is_connected:
                with contextlib.suppress(BleakError, TimeoutError, OSError):
                    async with asyncio.timeout(2.0):
                        await client.disconnect()

    async def _find(self) -> BLEDevice | None:
        timeout = self._timing.scan_timeout_s
        scanner = self._backend.scanner
        try:
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
        except (BleakError, OSError) as exc:  # no adapter, BlueZ down: same as not found, reported
            log.warning("%s: scanning failed: %s", self.device_id, exc)
            return None

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
        def on_value(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self._last_value = asyncio.get_running_loop().time()
            if name == "glucose" and len(data) >= 3:
                seq = int.from_bytes(data[1:3], "little")
                if (self._floor is not None and seq <= self._floor) or seq in self._seen:
                    self.duplicates += 1
                    return
                events = self._stream.value(name, bytes(data), stored=self._catching_up)
                if not any(isinstance(e, TechnicalEvent) and e.kind == "bad_frame" for e in events):
                    self._seen.add(seq)
                    if not self._catching_up:
                        if seq > (self._last_seq or 0) + 1:
                            self._gap.set()  # records in between were never sent: ask for them
                        else:
                            self._last_seq = seq
                            self._persist_soon()
            else:
                events = self._stream.value(name, bytes(data), stored=self._catching_up)
            self._deliver(events)

        return on_value

    def _deliver(self, events: list[DeviceEvent]) -> None:
        for event in events:
            self._emit(event)

    _persist_task: asyncio.Task[None] | None = None

    def _persist_soon(self) -> None:
        # The cursor write is disk I/O: off the loop, one at a time, latest value wins.
        if self._persist_task is None or self._persist_task.done():
            self._persist_task = asyncio.get_running_loop().create_task(self._persist())

    async def _persist(self) -> None:
        written: int | None = None
        while self._last_seq is not None and self._last_seq != written:
            written = self._last_seq
            await asyncio.to_thread(self._cursor.set_last_record, self.device_id, written)

    async def _subscribe_racp(self, client: BleakClient) -> None:
        def on_racp(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            try:
                response = decode_racp(bytes(data))
            except BleDecodeError as exc:
                self._racp_responses.append(str(exc))
                self._racp_answered.set()
                return
            if response.op == RacpOp.RESPONSE:
                self._racp_responses.append("" if response.code in (SUCCESS, NO_RECORDS) else response.text)
                self._racp_answered.set()

        await client.start_notify(RACP, on_racp)

    def _contiguous(self) -> int | None:
        """The last sequence number below which nothing is missing on this connection."""
        last = self._floor or 0
        while last + 1 in self._seen:
            last += 1
        return last if (self._floor is not None or last) else None

    async def _catch_up(self, client: BleakClient) -> None:
        """Ask for every record after the cursor and wait for the procedure to end."""
        self._racp_answered = answered = asyncio.Event()
        responses: list[str] = []
        self._racp_responses = responses
        request = racp_report_all() if self._floor is None else racp_report_after(self._floor)
        self._catching_up = True
        try:
            await client.write_gatt_char(RACP, request, response=True)
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
            complete = bool(finished) and not (responses and responses[0])
            # Complete: the device sent every record it has after the cursor (gaps are
            # deleted records). Otherwise stay below the first record not received, so
            # the next request starts there (a live record may be far ahead).
            self._last_seq = max(self._seen | {self._floor or 0}) or None if complete else self._contiguous()
            if not finished:
                with contextlib.suppress(BleakError, OSError):
                    await client.write_gatt_char(RACP, racp_abort(), response=True)
                log.warning(
                    "%s: stored records not finished in %g s: aborted", self.device_id, self._timing.records_timeout_s
                )
            elif responses and responses[0]:
                log.warning("%s: stored records refused: %s", self.device_id, responses[0])
        finally:
            for event in self._stream.flush():
                self._emit(event)
        self._catching_up = False
        self._floor = self._last_seq
        self._persist_soon()
        if self._persist_task is not None:
            await self._persist_task

    async def _watch(self, client: BleakClient) -> None:
        """Wait for the link to go; continuous profiles report silence as `stale`; a gap in
        live stored-record sequence numbers starts another catch-up."""
        loop = asyncio.get_running_loop()
        self._last_value = loop.time()
        stale_after = self._timing.stale_after_s
        stale = False
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(stale_after, 1.0) if not self.profile.stored_records else 0.1):
                    await self._lost.wait()
            if self._gap.is_set() and not self._lost.is_set():
                self._gap.clear()
                self._catching_up = True
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
