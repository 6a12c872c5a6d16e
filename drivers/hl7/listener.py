"""HL7 over MLLP on TCP: a listener with the same `run()` shape as a serial link.

`port = "tcp://HOST:PORT"` or `"tls://HOST:PORT"` in a device's config. Each
connection gets its own codec (its own MLLP state and ACKs); readings go to `emit`
in the loop turn in which their bytes arrived. TLS is 1.3 only and requires a
client certificate from the configured CA (the uplink's PKI); there is no
plaintext fallback on a tls:// listener, and a key file readable by group or
others is refused as the uplink refuses it.

A plain tcp:// listener needs no authentication, so nobody may hold it (issue #14):
connections are bounded in total and per peer address; a new connection at a
limit evicts the longest-idle connection (see `admission`), or is refused when
every one is mid-message. A connection must send its first byte within
`first_byte_timeout_s` (for TLS, the handshake too), complete each message within
`message_timeout_s` of its first byte, and is closed after `idle_timeout_s` of
silence. Refusals, evictions and missed first-byte/message deadlines are reported
as one "connection_refused" technical event per `report_interval_s` at most,
with a count. One loop turn handles at most `SLICE_BYTES` of a read and
`messages_per_turn` messages; the rest wait for the next turn, and no more is
read meanwhile (backpressure). A
sender that stops reading its ACKs is dropped when the write buffer limit is hit
rather than stalling the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from appliance.core.clock import Clock
from appliance.core.keyfiles import KeyFileError, check_key_file
from appliance.core.model import DeviceEvent, TechnicalEvent
from appliance.core.servers import close_server, serve_until_cancelled
from drivers.hl7.address import ListenAddress, parse_listen
from drivers.hl7.admission import ConnView, Deadline, RefusalReporter, Timeouts, admit, deadline
from drivers.hl7.codec import Hl7Codec, Seen
from drivers.hl7.message import Hl7Error
from drivers.hl7.seen_file import keep_saved, load_seen

__all__ = ["Hl7Listener", "ListenAddress", "ListenerTlsError", "parse_listen", "server_context"]

log = logging.getLogger(__name__)

READ_BYTES: Final = 64 * 1024
# One loop turn handles at most this much of a read: the worst input (alternating
# frame bytes) costs about 3 ms per slice, and a normal read is a slice or two.
SLICE_BYTES: Final = 4096
MESSAGES_PER_TURN: Final = 16
WRITE_LIMIT_BYTES: Final = 256 * 1024


class ListenerTlsError(Hl7Error):
    """The listener's TLS material is unusable (one line naming the file)."""


def server_context(ca_path: str, cert_path: str, key_path: str) -> ssl.SSLContext:
    """Raises ListenerTlsError for a missing key or one readable by others (the
    rule of every key on the box), OSError / ssl.SSLError for unloadable material."""
    try:
        check_key_file(key_path, "listener key")
    except KeyFileError as exc:
        raise ListenerTlsError(str(exc)) from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED  # senders prove who they are with our CA's certificate
    ctx.load_verify_locations(cafile=ca_path)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


@dataclass(slots=True)
class _Conn:
    """One open connection (mutable, owned by its task)."""

    conn_id: int
    peer: str
    writer: asyncio.StreamWriter
    opened: float
    last_activity: float
    got_bytes: bool = False
    message_since: float | None = None
    evicted: str = ""
    misbehaving: bool = False  # more messages refused or resent than accepted so far

    def view(self) -> ConnView:
        return ConnView(
            self.conn_id, self.peer, self.opened, self.last_activity, self.message_since is not None,
            self.message_since, self.misbehaving,
        )  # fmt: skip


def _ended(codec: Hl7Codec) -> int:
    """Messages the codec has finished with: used, refused or recognised as resends."""
    return codec.stats.frames_ok + codec.stats.frames_bad + codec.duplicates


class Hl7Listener:
    def __init__(
        self,
        device_id: str,
        address: ListenAddress,
        emit: Callable[[DeviceEvent], None],
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_connections: int = 16,
        max_per_peer: int = 4,
        idle_timeout_s: float = 300.0,
        first_byte_timeout_s: float = 30.0,
        message_timeout_s: float = 30.0,
        report_interval_s: float = 60.0,
        messages_per_turn: int = MESSAGES_PER_TURN,
        seen_path: str = "",
        clock: Clock,
        codec: Callable[..., Hl7Codec] = Hl7Codec,
    ) -> None:
        if address.tls and ssl_context is None:
            raise ValueError("a tls:// listener needs its TLS context (fail closed)")
        self.device_id = device_id
        self.address = address
        self._emit = emit
        self._ssl = ssl_context
        self._max = max_connections
        self._max_per_peer = max_per_peer
        self._timeouts = Timeouts(first_byte_timeout_s, message_timeout_s, idle_timeout_s)
        self._per_turn = messages_per_turn
        self._clock = clock  # the gateway's: ACK timestamps (MSH-7)
        self._codec = codec  # what a connection speaks: device results (ORU), or the census feed (ADT)
        # One identity space per listener, not per connection: a resend on a new
        # connection is used once, and readings of two connections never share a
        # sequence number (which the observation id is derived from).
        self._seen = Seen()
        self._seen_path = seen_path  # "" = the resend window lives in memory only (drivers/hl7/seen_file.py)
        self._sequence = itertools.count(1)
        self._reporter = RefusalReporter(report_interval_s)
        self._report_handle: asyncio.TimerHandle | None = None
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._clients: set[asyncio.Task[None]] = set()
        self.bound_port = 0
        self.connected = False  # listening
        self.messages = 0
        self.refused = 0  # refusals, evictions and missed first-byte/message deadlines
        self.ready = asyncio.Event()

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    async def run(self) -> None:
        saver: asyncio.Task[None] | None = None
        if self._seen_path:  # before the first connection: a resend must meet the saved window
            await asyncio.to_thread(load_seen, self._seen, self._seen_path)
            saver = asyncio.create_task(keep_saved(self._seen, self._seen_path))
        try:
            await self._listen()
        finally:
            if saver is not None:
                saver.cancel()
                await asyncio.gather(saver, return_exceptions=True)

    async def _listen(self) -> None:
        server = await asyncio.start_server(
            self._client, self.address.host, self.address.port, ssl=self._ssl, limit=READ_BYTES,
            ssl_handshake_timeout=self._timeouts.first_byte_s if self._ssl else None,
        )  # fmt: skip
        self.bound_port = server.sockets[0].getsockname()[1]
        self.connected = True
        self.ready.set()
        log.info("%s: HL7 listener on %s:%d%s", self.device_id, self.address.host, self.bound_port,
                 " (TLS 1.3, client certificates)" if self._ssl else "")  # fmt: skip
        try:
            await serve_until_cancelled()
        finally:
            self.connected = False
            server.close()  # no new connections while the handlers end
            if self._report_handle is not None:
                self._report_handle.cancel()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await close_server(server)

    # -- refusals ----------------------------------------------------------------------
    def _refusal(self, detail: str) -> None:
        self.refused += 1
        log.debug("%s: HL7 connection refused: %s", self.device_id, detail)  # the event carries them
        loop = asyncio.get_running_loop()
        if self._reporter.note(loop.time(), detail):
            self._report()
        elif self._report_handle is None and (due := self._reporter.due()) is not None:
            self._report_handle = loop.call_at(due, self._report)

    def _report(self) -> None:
        self._report_handle = None
        total, detail = self._reporter.take(asyncio.get_running_loop().time())
        self._emit(TechnicalEvent(self.device_id, "connection_refused", active=True, count=total, detail=detail))

    # -- one connection ----------------------------------------------------------------
    def _admit(self, peer: str, writer: asyncio.StreamWriter, now: float) -> _Conn | None:
        decision = admit([c.view() for c in self._conns.values()], peer, self._max, self._max_per_peer, now)
        if decision.action == "refuse":
            self._refusal(f"refused {peer}: {decision.reason}")
            writer.transport.abort()
            return None
        if decision.victim is not None:
            victim = self._conns.pop(decision.victim.conn_id)
            victim.evicted = decision.reason
            victim.writer.transport.abort()  # its task sees the end of the stream and cleans up
            self._refusal(f"evicted {victim.peer} for {peer}: {decision.reason}")
        conn = _Conn(next(self._ids), peer, writer, now, now)
        self._conns[conn.conn_id] = conn
        return conn

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) else str(peername)
        conn = self._admit(peer, writer, loop.time()) if task is not None else None
        if task is None or conn is None:
            writer.close()
            return
        self._clients.add(task)
        writer.transport.set_write_buffer_limits(high=WRITE_LIMIT_BYTES)
        codec = self._codec(
            self.device_id, self._clock, max_messages_per_feed=self._per_turn, seen=self._seen, sequence=self._sequence
        )
        try:
            await self._serve(conn, codec, reader, writer, peer)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.info("%s: HL7 connection from %s ended: %s", self.device_id, peer, exc or type(exc).__name__)
        except asyncio.CancelledError:
            # Shutdown. The task belongs to asyncio's server callback, which logs a
            # cancelled task as an error; ending normally keeps shutdown quiet.
            pass
        finally:
            if conn.evicted:
                log.info("%s: HL7 connection from %s evicted: %s", self.device_id, peer, conn.evicted)
            self._conns.pop(conn.conn_id, None)
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self, conn: _Conn, codec: Hl7Codec, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        """Read and handle until the sender ends, misbehaves or misses a deadline."""
        loop = asyncio.get_running_loop()
        while True:
            due = deadline(self._timeouts, conn.opened, conn.last_activity, conn.got_bytes, conn.message_since)
            try:
                async with asyncio.timeout_at(due.at):
                    data = await reader.read(READ_BYTES)
            except TimeoutError:
                self._timed_out(due, peer)
                return
            if not data:
                return
            now = loop.time()
            conn.last_activity, conn.got_bytes = now, True
            ended_before = _ended(codec)
            if not await self._handle(codec, data, writer, peer):
                return
            # Resends count with refusals: a connection that only repeats one
            # message holds a slot without ever giving us anything new.
            conn.misbehaving = codec.stats.frames_bad + codec.duplicates > codec.stats.frames_ok
            if not codec.in_message:
                conn.message_since = None
            elif conn.message_since is None or _ended(codec) != ended_before:
                # A message under way that began in this read (the one before it
                # ended here too): its deadline runs from now, so a sender that
                # streams messages back to back is never taken for a trickler.
                conn.message_since = now

    def _timed_out(self, due: Deadline, peer: str) -> None:
        if due.is_refusal:
            what = "no first byte" if due.kind == "first_byte" else "message not complete"
            limit = self._timeouts.first_byte_s if due.kind == "first_byte" else self._timeouts.message_s
            self._refusal(f"closed {peer}: {what} within {limit:g} s")
        else:
            log.info("%s: HL7 connection from %s idle, closed", self.device_id, peer)

    async def _handle(self, codec: Hl7Codec, data: bytes, writer: asyncio.StreamWriter, peer: str) -> bool:
        """Feed one read, a slice and a bounded number of messages per loop turn; False: drop the sender."""
        for offset in range(0, len(data), SLICE_BYTES):
            if offset:
                await asyncio.sleep(0)
            if not await self._handle_slice(codec, data[offset : offset + SLICE_BYTES], writer, peer):
                return False
        return True

    async def _handle_slice(self, codec: Hl7Codec, data: bytes, writer: asyncio.StreamWriter, peer: str) -> bool:
        while True:
            before = codec.stats.frames_ok
            for event in codec.feed(data):
                self._emit(event)
            self.messages += codec.stats.frames_ok - before
            out = codec.data_to_send()
            if out:
                writer.write(out)
                if writer.transport.get_write_buffer_size() >= WRITE_LIMIT_BYTES:
                    self._emit(TechnicalEvent(self.device_id, "bad_frame", detail=f"{peer}: not reading its ACKs"))
                    return False
            if not codec.backlog:
                return True
            data = b""
            await asyncio.sleep(0)  # the rest of this read in the next loop turn
