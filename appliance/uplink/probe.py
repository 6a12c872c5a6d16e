"""A time-bounded MQTT 5 CONNECT over TLS, to tell "broker up and we are
accepted" from every way of being refused.

gmqtt alone cannot tell these apart: with TLS 1.3 the broker checks the client
certificate after the handshake has completed on the client's side, so a
refused certificate looks like a connection that never answers, and gmqtt
reconnects forever. The probe bounds the whole exchange and names the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["MalformedPacket", "ProbeResult", "connect_packet", "decode_remaining_length", "probe"]

MQTT_V5: Final = 5
CONNACK: Final = 0x20
MAX_LENGTH_BYTES: Final = 4  # MQTT 5 §1.5.5: a Variable Byte Integer has at most four bytes


class MalformedPacket(Exception):
    """The broker's reply breaks MQTT's framing (a length of more than four bytes)."""


def decode_remaining_length(data: bytes) -> tuple[int, int] | None:
    """The Remaining Length at the start of `data` as (value, bytes used); None = need more bytes.

    MQTT's Variable Byte Integer: 7 bits per byte, least significant first, the top
    bit says another byte follows. A CONNACK with a reason string or user properties
    is longer than 127 bytes, so its length takes two or more bytes.
    """
    value = 0
    for i, byte in enumerate(data[:MAX_LENGTH_BYTES]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, i + 1
    if len(data) >= MAX_LENGTH_BYTES:
        raise MalformedPacket(f"remaining length runs past {MAX_LENGTH_BYTES} bytes: {data[:5].hex()}")
    return None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, keepalive_s: int = 30) -> bytes:
    cid = client_id.encode()
    variable = b"\x00\x04MQTT" + bytes([MQTT_V5, 0x02]) + struct.pack("!H", keepalive_s) + _varint(0)
    payload = struct.pack("!H", len(cid)) + cid
    body = variable + payload
    return bytes([0x10]) + _varint(len(body)) + body


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    reason: str


class _Truncated(Exception):
    """The broker closed mid-reply (unlike closing before any byte: a refused certificate)."""


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One packet: (first byte, body); the length is read a byte at a time as it is decoded."""
    first = (await reader.readexactly(1))[0]
    length = b""
    try:
        while (decoded := decode_remaining_length(length)) is None:
            length += await reader.readexactly(1)
        return first, await reader.readexactly(decoded[0])
    except asyncio.IncompleteReadError as exc:
        raise _Truncated(f"0x{first:02x} packet cut short after {len(length)} length byte(s)") from exc


def _judge(first: int, body: bytes) -> ProbeResult:
    if first != CONNACK:
        return ProbeResult(False, f"unexpected reply 0x{first:02x} to CONNECT")
    if len(body) < 2:
        return ProbeResult(False, f"malformed CONNACK: {len(body)}-byte body")
    code = body[1]
    if code != 0:
        return ProbeResult(False, f"CONNACK refused the connection, reason code 0x{code:02x}")
    return ProbeResult(True, "connected")


async def probe(
    host: str, port: int, ctx: ssl.SSLContext, server_hostname: str, client_id: str, *, timeout_s: float = 5.0
) -> ProbeResult:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_hostname)
            writer.write(connect_packet(client_id))
            await writer.drain()
            return _judge(*await _read_reply(reader))
    except ssl.SSLCertVerificationError as exc:
        return ProbeResult(False, f"broker certificate not trusted: {exc.verify_message}")
    except ssl.SSLError as exc:
        return ProbeResult(False, f"TLS refused: {exc.reason or exc}")
    except MalformedPacket as exc:
        return ProbeResult(False, f"malformed reply to CONNECT: {exc}")
    except _Truncated as exc:
        return ProbeResult(False, f"broker closed the connection mid-reply: {exc}")
    except TimeoutError:
        return ProbeResult(False, f"no CONNACK within {timeout_s:g} s (client certificate refused?)")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        return ProbeResult(False, f"broker closed the connection ({type(exc).__name__}): client certificate refused?")
    except OSError as exc:
        return ProbeResult(False, f"cannot reach {host}:{port}: {exc.strerror or exc}")
    finally:
        if writer is not None:
            writer.close()
            # Wait for the TLS close to finish, or the socket outlives the probe.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
