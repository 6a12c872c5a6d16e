"""The CONNECT/CONNACK probe: MQTT's variable-length Remaining Length, from vectors and
from a tiny TLS server on 127.0.0.1 that answers with hand-made replies."""

import asyncio
import ssl
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.uplink.probe import MalformedPacket, _varint, decode_remaining_length, probe
from appliance.uplink.tls import client_context
from hil.broker import Pki, make_pki

# MQTT 5 §1.5.5's own examples: the boundaries of one to four bytes.
VECTORS = [
    (0, "00"),
    (127, "7f"),
    (128, "8001"),
    (16_383, "ff7f"),
    (16_384, "808001"),
    (2_097_151, "ffff7f"),
    (2_097_152, "80808001"),
    (268_435_455, "ffffff7f"),
]


@pytest.mark.parametrize(("value", "encoded"), VECTORS)
def test_remaining_length_vectors(value, encoded):
    data = bytes.fromhex(encoded)
    assert decode_remaining_length(data) == (value, len(data))
    assert decode_remaining_length(data + b"\x20\x00") == (value, len(data))  # what follows is not its business
    assert _varint(value) == data


@pytest.mark.parametrize("partial", ["", "80", "ff", "8080", "ffffff"])
def test_a_length_still_arriving_needs_more_bytes(partial):
    assert decode_remaining_length(bytes.fromhex(partial)) is None


@pytest.mark.parametrize("bad", ["80808080", "ffffffff01", "8080808000"])
def test_a_length_of_more_than_four_bytes_is_malformed(bad):
    with pytest.raises(MalformedPacket, match="past 4 bytes"):
        decode_remaining_length(bytes.fromhex(bad))


@given(st.integers(0, 268_435_455), st.binary(max_size=8))
def test_every_length_round_trips(value, tail):
    encoded = _varint(value)
    assert 1 <= len(encoded) <= 4
    assert decode_remaining_length(encoded + tail) == (value, len(encoded))
    for cut in range(len(encoded)):
        assert decode_remaining_length(encoded[:cut]) is None


# -- against a server ---------------------------------------------------------------


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connack(code: int = 0, reason: str = "", user: tuple[str, str] | None = None) -> bytes:
    props = b""
    if reason:
        props += b"\x1f" + _string(reason)  # Reason String
    if user:
        props += b"\x26" + _string(user[0]) + _string(user[1])  # User Property
    body = bytes([0x00, code]) + _varint(len(props)) + props
    return b"\x20" + _varint(len(body)) + body


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def answer(pki):
    """Probe a TLS server that reads the CONNECT, sends `reply` and closes: (ok, reason)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.dir / "broker.pem", pki.dir / "broker.key")
    server_ctx.load_verify_locations(pki.ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    servers: list[asyncio.Server] = []

    async def serve(reply: bytes) -> tuple[bool, str]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert (await reader.readexactly(1)) == b"\x10"  # CONNECT
            writer.write(reply)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        result = await probe("127.0.0.1", port, client_context(pki.client("gw-1")), "localhost", "gw-1", timeout_s=10)
        return result.ok, result.reason

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_short_connack_is_accepted(answer):
    assert len(connack()) == 5
    assert await answer(connack()) == (True, "connected")


async def test_a_connack_longer_than_127_bytes_is_read_whole(answer):
    reply = connack(reason="x" * 150, user=("region", "ward-7" * 20))
    assert reply[1] & 0x80 and len(reply) > 2 + 127  # a two-byte remaining length
    assert await answer(reply) == (True, "connected")


async def test_a_long_refusal_still_names_its_reason_code(answer):
    reply = connack(code=0x87, reason="Not authorized: " + "certificate CN not in the ACL " * 10)
    ok, reason = await answer(reply)
    assert not ok and "reason code 0x87" in reason, reason


async def test_a_length_of_five_bytes_is_a_clear_error(answer):
    ok, reason = await answer(b"\x20\x80\x80\x80\x80\x01" + bytes(10))
    assert not ok and "malformed" in reason and "past 4 bytes" in reason, reason


@pytest.mark.parametrize(
    "reply",
    [
        b"\x20\x80",  # the length promises another byte and the connection ends
        b"\x20\xc8\x01" + bytes(20),  # 200 bytes promised, 20 sent
    ],
)
async def test_a_truncated_reply_is_named(answer, reply):
    ok, reason = await answer(reply)
    assert not ok and "mid-reply" in reason, reason


async def test_a_reply_that_is_not_a_connack_is_named(answer):
    ok, reason = await answer(b"\xe0\x00")
    assert not ok and reason == "unexpected reply 0xe0 to CONNECT", reason


async def test_a_connack_without_a_reason_code_is_malformed(answer):
    ok, reason = await answer(b"\x20\x01\x00")
    assert not ok and "malformed CONNACK" in reason, reason
