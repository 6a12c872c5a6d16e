"""The uplink: drain the store to an MQTT 5 broker over mutual TLS 1.3.

A row leaves the store only after the broker's PUBACK for the publish that
carried it (success reason code). Several rows go in one publish, up to a size
bound (see `appliance.uplink.envelope`); an alarm row goes alone and first. At most `window`
publishes are in flight, never more than the broker's Receive Maximum. Every
connect is time-bounded and preceded by a probe that names refusals; failures
back off exponentially with jitter up to 60 s and are reported as `uplink_down`
(with the outage's duration when it ends). Bad TLS material keeps the uplink
off (fail closed) while the gateway runs on.

gmqtt is used with its own reconnect and QoS replay switched off: the store is
the only source of truth, and a fresh client per connection avoids replaying
stale packets. What it does below gmqtt's public API lives in
`appliance.uplink.gmqtt_adapter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import gmqtt

from appliance.core.backoff import Backoff
from appliance.core.boot import new_boot_id
from appliance.core.errors import BedsideUplinkError
from appliance.core.model import AlarmEvent, Record, RecordFormatError, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from appliance.queue.queue import RecordQueue
from appliance.queue.records import epoch_ms, to_current
from appliance.queue.store import RecordClass, StoreError
from appliance.queue.upkeep import Cursor
from appliance.sections import UplinkSettings
from appliance.uplink.active import ActiveAlarms, bed_leaf
from appliance.uplink.envelope import CBOR, JSON, MAX_ROWS_PER_PUBLISH, PAYLOAD_VERSION, Row, encode, pack
from appliance.uplink.gmqtt_adapter import AckClient, ConnectError, close_client, receive_maximum
from appliance.uplink.probe import probe
from appliance.uplink.tls import TlsFiles, UplinkTlsError, client_context, preflight

__all__ = ["PAYLOAD_VERSION", "Uplink", "UplinkSettings"]

log = logging.getLogger(__name__)
# Rows read from the store per call: bounds the store thread's time per read
# (an alarm commit waits for at most one such job).
FETCH_ROWS: Final = 512  # ~4 ms of reading and opening at 3-obs rows
IDLE_POLL_S: Final = 0.05  # idle: look for rows the store did not announce
BACKLOG_SHARE: Final = 0.25  # of the publish window, for rows older than the connection
PUBACK_OK: Final = frozenset({0x00, 0x10})  # success, no matching subscribers
# On a clean stop, how long the retained "offline" status may take to be acknowledged;
# past it the DISCONNECT asks the broker to publish the Will (the same state) instead.
STOP_TIMEOUT_S: Final = 2.0
DISCONNECT_WITH_WILL: Final = 0x04
# The topic leaf of each class sent (docs/wire.md); quarantine is its own plane (issue 21).
LEAF_OF_CLASS: Final = {RecordClass.ALARM: "alarms", RecordClass.UNPAIRED: "quarantine"}


class _Refused(BedsideUplinkError):
    """The broker refused a publish (e.g. ACL): the row stays in the store."""


class Uplink:
    def __init__(
        self,
        settings: UplinkSettings,
        queue: RecordQueue,
        report: Callable[[TechnicalEvent], None],
        *,
        boot_id: str | None = None,
    ) -> None:
        self.settings = settings
        # On every envelope with `seq`: a consumer tells a restart from a gap.
        self.boot_id = boot_id or new_boot_id()
        self.queue = queue
        self._report = report
        self._backoff = Backoff(settings.backoff_min_s, settings.backoff_max_s)
        self.connected = False
        self.down_since: float | None = None
        self.sent_rows = 0
        self._seq = 0
        self._reason = ""
        self._client: AckClient | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._statuses: dict[str, bytes] = {}  # retained status/<name> payloads (e.g. ota, alarms/<bed>)
        self._active = ActiveAlarms()
        # Rows the broker acknowledged whose delete failed (disk full, I/O error):
        # never sent again, deleted on a later pass. Bounded by what is stored.
        self._undeleted: set[int] = set()
        self._forget_tried = 0.0
        # Per stream and class, the last row this connection handed out.
        self._after: dict[str, dict[RecordClass, Cursor]] = {"alarm": {}, "live": {}, "backlog": {}}

    def _down(self, reason: str) -> None:
        # One event per outage and per change of reason: retries with the same
        # cause stay quiet, a new cause (e.g. now the certificate expired) is said.
        if self.down_since is None:
            self.down_since = time.monotonic()
        if reason != self._reason:
            self._reason = reason
            self._report(TechnicalEvent("gateway", TechnicalKind.UPLINK_DOWN, detail=reason))
            log.warning("uplink down: %s", reason)

    def _up(self) -> None:
        if self.down_since is not None:
            outage = time.monotonic() - self.down_since
            self._report(
                TechnicalEvent("gateway", TechnicalKind.UPLINK_DOWN, active=False, detail=f"down for {outage:.1f} s")
            )
        self.down_since = None
        self._reason = ""
        self._backoff.reset()

    async def run(self) -> None:
        s = self.settings
        tls = TlsFiles(s.ca_path, s.cert_path, s.key_path)
        self.down_since = time.monotonic()  # down until the first connect succeeds
        while True:
            try:
                preflight(tls)
                ctx = client_context(tls)
            except UplinkTlsError as exc:
                # Fail closed: no connection without valid material; re-check later (it may be renewed).
                self._down(f"uplink disabled: {exc}")
                await asyncio.sleep(s.backoff_max_s)
                continue
            result = await probe(s.host, s.port, ctx, s.tls_server_name, s.gateway_id, timeout_s=s.connect_timeout_s)
            if not result.ok:
                self._down(result.reason)
                await asyncio.sleep(self._backoff.next())
                continue
            try:
                await self._session(ctx)
            except (OSError, TimeoutError, ConnectionError, _Refused, ConnectError) as exc:
                self._down(f"{type(exc).__name__}: {exc}")
            self.connected = False
            await asyncio.sleep(self._backoff.next())

    async def _session(self, ctx: Any) -> None:
        s = self.settings
        will = gmqtt.Message(s.topic("status"), _state("offline", "connection lost"), qos=1, retain=True, **JSON)
        client = AckClient(s.gateway_id, will_message=will, clean_session=True)
        client.set_config({"reconnect_retries": 0})
        lost = asyncio.Event()
        client.on_disconnect = lambda *args, **kw: lost.set()
        client.on_message = self._on_command
        reason = 0
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                await client.connect(s.host, s.port, ssl=ctx, keepalive=s.keepalive_s)
            self.connected = True
            connected_ms = int(time.time() * 1000)
            self._up()
            async with asyncio.timeout(s.connect_timeout_s):
                await client.publish_tracked(s.topic("status"), _state("online"), retain=True, properties=JSON)
            client.subscribe(s.topic("cmd"), qos=1)
            self._client = client
            for name, payload in self._statuses.items():
                client.publish_tracked(s.topic(f"status/{name}"), payload, retain=True, properties=JSON)
            await self._drain(client, lost, connected_ms)
        except asyncio.CancelledError:
            # A clean stop (SIGTERM): leave "offline" with its reason retained.
            if self._client is not None and not await _say_offline(client, s.topic("status")):
                reason = DISCONNECT_WITH_WILL
            raise
        finally:
            self._client = None
            client.fail_all(ConnectionError("connection closed"))
            await close_client(client, reason)

    def on_record(self, record: Record) -> None:
        """Gateway subscriber: keep each bed's retained active-alarm status current.
        Never awaits: set_status only writes to the connection's buffer."""
        if isinstance(record, AlarmEvent):
            self.set_status(bed_leaf(record.bed_id), self._active.update(record))

    def set_status(self, name: str, payload: dict[str, Any]) -> None:
        """Retained JSON on `status/<name>`: sent now if connected, and on every reconnect."""
        data = json.dumps(payload, sort_keys=True).encode()
        self._statuses[name] = data
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):  # a closing connection: sent on the next connect
                client.publish_tracked(self.settings.topic(f"status/{name}"), data, retain=True, properties=JSON)

    def publish_side(self, leaf: str, payload: bytes, content_type: str) -> asyncio.Future[int] | None:
        """QoS 1 on `leaf` over the current connection (the clinical plane's audit and
        clinical topics); None while not connected or with no packet id free."""
        client = self._client
        if client is None:
            return None
        try:
            props = {"content_type": content_type, "payload_format_id": 1}
            return client.publish_tracked(self.settings.topic(leaf), payload, properties=props)
        except (OverflowError, ConnectionError, RuntimeError):
            return None  # tried again shortly

    def _on_command(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        task = asyncio.get_running_loop().create_task(self._command(payload))
        self._commands.add(task)  # keep a reference until it is done
        task.add_done_callback(self._commands.discard)
        return 0

    async def _command(self, payload: bytes) -> None:
        """Answer `cmd` on `cmd/response`: ping, stats, flush. Bad requests get an error reply."""
        try:
            request = json.loads(payload)
            cmd, req_id = request["cmd"], request.get("id")
        except (ValueError, KeyError, TypeError):
            reply: dict[str, Any] = {"ok": False, "error": "request must be JSON with a 'cmd'"}
            req_id = None
        else:
            if cmd == "ping":
                reply = {"ok": True, "pong": int(time.time() * 1000)}  # epoch ms, as everywhere on the wire
            elif cmd == "stats":
                st = await self.queue.stats()
                reply = {"ok": True, "records": st.records, "fill": round(st.fill, 4),
                         "dropped": st.dropped_records, "sent_rows": self.sent_rows}  # fmt: skip
            elif cmd == "flush":
                await self.queue.flush()
                reply = {"ok": True, "flushed": True}
            else:
                reply = {"ok": False, "error": f"unknown cmd {cmd!r}; use ping, stats or flush"}
        reply["id"] = req_id
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                client.publish_tracked(self.settings.topic("cmd/response"), json.dumps(reply).encode(), properties=JSON)

    async def _idle(self) -> None:
        """Until the store says a write landed, or 50 ms (the poll is kept: rows the
        store wrote without telling, e.g. another path, are still found)."""
        stored = self.queue.stored
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(IDLE_POLL_S):
                await stored.wait()
        stored.clear()

    async def _next_rows(self, room: int, connected_ms: int) -> list[Row]:
        """Alarms first; then live data, with the backlog (rows older than this
        connection) always given at least BACKLOG_SHARE of the room when it exists,
        so a long outage drains while the present stays current. Each stream
        continues after the last row this connection handed out (`_after`): no
        exclusion list of the rows in flight, and each read costs O(room)."""
        busy = frozenset(self._undeleted)
        q, after = self.queue, self._after
        rows = await q.outbox(room, busy, (RecordClass.ALARM,), after=after["alarm"])
        room -= len(rows)
        other = (RecordClass.TECHNICAL, RecordClass.TELEMETRY, RecordClass.UNPAIRED)  # never held / withheld
        reserve = math.ceil(room * BACKLOG_SHARE)
        live = await q.outbox(room - reserve, busy, other, created_from_ms=connected_ms, after=after["live"])
        backlog = await q.outbox(room - len(live), busy, other, created_before_ms=connected_ms, after=after["backlog"])
        if len(live) + len(backlog) < room:
            cursor = dict(after["live"])
            for row_id, cls, created_ms, _ in live:
                cursor[cls] = (created_ms, row_id)
            live += await q.outbox(
                room - len(live) - len(backlog), busy, other, created_from_ms=connected_ms, after=cursor
            )
            live.sort(key=lambda r: (r[1], r[2], r[0]))  # by class then age, as the store hands them out
        return rows + live + backlog

    def _handed_out(self, rows: list[Row], connected_ms: int) -> None:
        for row_id, cls, created_ms, _ in rows:
            stream = "alarm" if cls is RecordClass.ALARM else "live" if created_ms >= connected_ms else "backlog"
            self._after[stream][cls] = (created_ms, row_id)

    async def _drain(self, client: AckClient, lost: asyncio.Event, connected_ms: int) -> None:
        s = self.settings
        rm = receive_maximum(client)
        # gmqtt hands out at most Receive Maximum - 1 packet ids and raises OverflowError past that.
        window = max(1, min(s.window, rm - 1))
        in_flight: dict[asyncio.Future[int], list[int]] = {}
        self._after = {"alarm": {}, "live": {}, "backlog": {}}  # a new connection starts from the oldest
        self.queue.delivering = True  # compaction waits: it would replace rows in flight
        try:
            while not lost.is_set():
                room = window - len(in_flight)
                if room > 0:
                    rows = await self._next_rows(min(room * MAX_ROWS_PER_PUBLISH, FETCH_ROWS), connected_ms)
                    for group in pack(rows, connected_ms, room):
                        self._handed_out(group, connected_ms)
                        self._seq += 1
                        cls, replay = group[0][1], group[0][2] < connected_ms
                        payload = encode(s.gateway_id, self._seq, cls, replay, _current(group), boot=self.boot_id)
                        leaf = LEAF_OF_CLASS.get(cls, "telemetry")
                        in_flight[client.publish_tracked(s.topic(leaf), payload, properties=CBOR)] = [
                            r[0] for r in group
                        ]
                if not in_flight:
                    if self._undeleted and time.monotonic() - self._forget_tried >= 1.0:
                        await self._forget(list(self._undeleted))
                    await self._idle()
                    continue
                done, _ = await asyncio.wait(list(in_flight), timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                acked: list[int] = []
                for fut in done:
                    row_ids = in_flight.pop(fut)
                    code = fut.result()  # raises ConnectionError when the link dropped
                    if code not in PUBACK_OK:
                        raise _Refused(f"broker refused rows {row_ids[0]}..{row_ids[-1]}: PUBACK reason 0x{code:02x}")
                    acked += row_ids
                if acked:
                    self.sent_rows += len(acked)
                    await self._forget([*acked, *self._undeleted])
        finally:
            self.queue.delivering = False
        raise ConnectionError("broker connection lost")

    async def _forget(self, row_ids: list[int]) -> None:
        """Delete delivered rows; if the store cannot (a full disk can refuse even a
        delete in WAL mode), remember them so they are neither resent nor lost."""
        self._forget_tried = time.monotonic()
        try:
            await self.queue.delete(row_ids)
        except StoreError as exc:
            if not self._undeleted:
                log.warning("uplink: %d delivered rows not yet deleted from the store: %s", len(row_ids), exc)
            self._undeleted.update(row_ids)
            return
        self._undeleted.difference_update(row_ids)


def _state(state: str, reason: str = "") -> bytes:
    """The retained `status` payload (docs/wire.md)."""
    body: dict[str, Any] = {"state": state, "time": epoch_ms(datetime.now(UTC)), "payload_version": PAYLOAD_VERSION}
    if reason:
        body["reason"] = reason
    return json.dumps(body, sort_keys=True).encode()


def _current(group: list[Row]) -> list[bytes]:
    """Rows as the wire carries them: a row stored by an older gateway in store
    schema 1 is rewritten (one time representation on the wire). An unreadable one
    goes as it is: the consumer reports it, and the store never loses a row silently."""
    out = []
    for row in group:
        try:
            out.append(to_current(row[3]))
        except RecordFormatError:
            out.append(row[3])
    return out


async def _say_offline(client: AckClient, topic: str) -> bool:
    """Publish the retained offline status and wait (bounded) for its PUBACK."""
    try:
        fut = client.publish_tracked(topic, _state("offline", "stopped"), retain=True, properties=JSON)
        async with asyncio.timeout(STOP_TIMEOUT_S):
            return await fut in PUBACK_OK
    except Exception:
        return False
