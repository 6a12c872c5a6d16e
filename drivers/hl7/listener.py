"""HL7 over MLLP on TCP: a listener with the same `run()` shape as a serial link.

`port = "tcp://HOST:PORT"` or `"tls://HOST:PORT"` in a device's config. Each
connection gets its own codec (its own MLLP state and ACKs); readings go to `emit`
in the loop turn in which their bytes arrived. TLS is 1.3 only and requires a
client certificate from the configured CA (the uplink's PKI); there is no
plaintext fallback on a tls:// listener. Connections are bounded in number and
closed after `idle_timeout_s` of silence; a sender that stops reading its ACKs is
dropped when the write buffer limit is hit rather than stalling the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from appliance.model import DeviceEvent, TechnicalEvent
from drivers.hl7.codec import Hl7Codec

__all__ = ["Hl7Listener", "ListenAddress", "parse_listen", "server_context"]

log = logging.getLogger(__name__)

READ_BYTES: Final = 64 * 1024
WRITE_LIMIT_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class ListenAddress:
    tls: bool
    host: str
    port: int


def parse_listen(text: str) -> ListenAddress | None:
    """`tcp://host:port` / `tls://host:port` -> address; None for anything else (a serial path)."""
    if not text.startswith(("tcp://", "tls://")):
        return None
    parts = urlsplit(text)
    if parts.hostname is None or parts.port is None or parts.path not in ("", "/"):
        raise ValueError(f"{text!r}: expected tcp://HOST:PORT or tls://HOST:PORT")
    return ListenAddress(parts.scheme == "tls", parts.hostname, parts.port)


def server_context(ca_path: str, cert_path: str, key_path: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED  # senders prove who they are with our CA's certificate
    ctx.load_verify_locations(cafile=ca_path)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


class Hl7Listener:
    def __init__(
        self,
        device_id: str,
        address: ListenAddress,
        emit: Callable[[DeviceEvent], None],
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_connections: int = 16,
        idle_timeout_s: float = 300.0,
    ) -> None:
        if address.tls and ssl_context is None:
            raise ValueError("a tls:// listener needs its TLS context (fail closed)")
        self.device_id = device_id
        self.address = address
        self._emit = emit
        self._ssl = ssl_context
        self._max = max_connections
        self._idle_s = idle_timeout_s
        self._clients: set[asyncio.Task[None]] = set()
        self.bound_port = 0
        self.connected = False  # listening
        self.messages = 0
        self.ready = asyncio.Event()

    async def run(self) -> None:
        server = await asyncio.start_server(
            self._client, self.address.host, self.address.port, ssl=self._ssl, limit=READ_BYTES
        )
        self.bound_port = server.sockets[0].getsockname()[1]
        self.connected = True
        self.ready.set()
        log.info("%s: HL7 listener on %s:%d%s", self.device_id, self.address.host, self.bound_port,
                 " (TLS 1.3, client certificates)" if self._ssl else "")  # fmt: skip
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.connected = False
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        if task is None or len(self._clients) >= self._max:
            log.warning("%s: refusing HL7 connection from %s: %d connections open", self.device_id, peer, self._max)
            writer.close()
            return
        self._clients.add(task)
        writer.transport.set_write_buffer_limits(high=WRITE_LIMIT_BYTES)
        codec = Hl7Codec(self.device_id)
        try:
            while True:
                async with asyncio.timeout(self._idle_s):
                    data = await reader.read(READ_BYTES)
                if not data:
                    break
                before = codec.stats.frames_ok
                for event in codec.feed(data):
                    self._emit(event)
                self.messages += codec.stats.frames_ok - before
                out = codec.data_to_send()
                if out:
                    writer.write(out)
                    if writer.transport.get_write_buffer_size() >= WRITE_LIMIT_BYTES:
                        self._emit(TechnicalEvent(self.device_id, "bad_frame", detail=f"{peer}: not reading its ACKs"))
                        break
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError) as exc:
            log.info("%s: HL7 connection from %s ended: %s", self.device_id, peer, exc or type(exc).__name__)
        except asyncio.CancelledError:
            # Shutdown. The task belongs to asyncio's server callback, which logs a
            # cancelled task as an error; ending normally keeps shutdown quiet.
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
