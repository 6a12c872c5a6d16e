"""Issue #14 finding 2 and 7: the HL7 listener cannot be held by idle or trickling
connections, reports refusals as rate-limited technical events, and refuses a key
file readable by others. Real TCP on 127.0.0.1; short timings passed as keywords,
and only generous upper bounds on wall time."""

import asyncio
import contextlib
import os
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config import ConfigError, parse_config
from appliance.core.clock import MonotonicUTC
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from appliance.gateway import Gateway
from drivers.hl7.admission import STALLED_MESSAGE_S, ConnView, RefusalReporter, admit, stalled
from drivers.hl7.listener import Hl7Listener, ListenAddress, ListenerTlsError, server_context
from drivers.hl7.mllp import frame
from hil.broker import make_pki
from tests.integration.helpers import until

MSG = (
    b"MSH|^~\\&|S|F|||20260101120000||ORU^R01^ORU_R01|{id}|P|2.6|||AL|NE\rOBR|1|||x|||20260101120000\r"
    b"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|262688^MDC_DIM_PERCENT^MDC\r"
)


def message(n: int) -> bytes:
    return frame(MSG.replace(b"{id}", b"M%d" % n))


def refusals(events: list[DeviceEvent]) -> list[TechnicalEvent]:
    return [e for e in events if isinstance(e, TechnicalEvent) and e.kind == "connection_refused"]


@contextlib.asynccontextmanager
async def listening(events: list[DeviceEvent], **kw):
    kw.setdefault("clock", MonotonicUTC())
    listener = Hl7Listener("hl7", ListenAddress(False, "127.0.0.1", 0), events.append, **kw)
    task = asyncio.create_task(listener.run())
    await listener.ready.wait()
    writers: list[asyncio.StreamWriter] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound_port)
        writers.append(writer)
        return reader, writer

    try:
        yield listener, connect
    finally:
        for w in writers:
            w.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def send_and_ack(connect, n: int) -> bytes:
    reader, writer = await connect()
    writer.write(message(n))
    async with asyncio.timeout(5):
        ack: bytes = await reader.readuntil(b"\x1c\r")
    return ack


async def closed(reader: asyncio.StreamReader, within_s: float = 5.0) -> bool:
    async with asyncio.timeout(within_s):
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
    return True


async def test_idle_connections_at_the_limit_do_not_lock_out_a_real_sender():
    events: list[DeviceEvent] = []
    async with listening(events, max_connections=4, max_per_peer=100) as (listener, connect):
        idle = [await connect() for _ in range(4)]
        await until(lambda: listener.open_connections == 4)
        ack = await send_and_ack(connect, 1)
        assert b"MSA|CA|M1" in ack
        assert await closed(idle[0][0])  # the longest idle went first
        assert listener.open_connections == 4
        (event,) = refusals(events)
        assert "evicted" in event.detail and event.count == 1
        assert any(isinstance(e, Reading) for e in events)


async def test_one_peer_evicts_its_own_idle_connections_first():
    events: list[DeviceEvent] = []
    async with listening(events, max_connections=16, max_per_peer=2) as (listener, connect):
        first, _ = await connect(), await connect()
        await until(lambda: listener.open_connections == 2)
        assert b"MSA|CA|M2" in await send_and_ack(connect, 2)
        assert await closed(first[0]) and listener.open_connections == 2
        assert "reached 2 connections" in refusals(events)[0].detail


async def test_connections_mid_message_are_never_evicted_the_new_one_is_refused():
    events: list[DeviceEvent] = []
    async with listening(events, max_connections=2, max_per_peer=100) as (listener, connect):
        busy = [await connect() for _ in range(2)]
        for _, w in busy:
            w.write(b"\x0bMSH|^~\\&|partial")
        await until(lambda: listener.open_connections == 2)
        await asyncio.sleep(0.1)
        reader, _ = await connect()
        assert await closed(reader)
        assert listener.open_connections == 2 and "all mid-message" in refusals(events)[0].detail


async def test_stalled_and_junk_sending_connections_give_way_to_a_real_sender():
    """The outside tester's lockout: every slot mid-message, some trickling a message
    for longer than a real sender needs, others completing refused junk just often
    enough never to stall. A real sender still gets in."""
    events: list[DeviceEvent] = []
    async with listening(events, max_connections=2, max_per_peer=100) as (listener, connect):
        trickler = await connect()
        trickler[1].write(b"\x0bMSH|^~\\&|partial")
        junk = await connect()
        junk[1].write(b"\x0bMSH|^~\\&|A\x1c\r\x0bMSH|")  # a refused "message", then one under way
        await until(lambda: listener.open_connections == 2)
        await asyncio.sleep(0.1)
        reader, writer = await connect()
        writer.write(message(1))
        async with asyncio.timeout(5):
            assert b"MSA|CA|M1" in await reader.readuntil(b"\x1c\r")  # the junk sender gave way at once
        assert await closed(junk[0])
        writer.close()  # the real sender leaves; a second trickler takes its slot
        await until(lambda: listener.open_connections == 1)
        later = await connect()
        later[1].write(b"\x0bMSH|^~\\&|partial")
        await until(lambda: listener.open_connections == 2)
        await asyncio.sleep(STALLED_MESSAGE_S + 0.2)
        assert b"MSA|CA|M2" in await send_and_ack(connect, 2)  # the oldest stalled message went
        assert await closed(trickler[0])
        details = [e.detail for e in refusals(events)]
        assert details and "misbehaving" in details[0]


async def test_a_trickling_sender_is_closed_at_its_message_deadline():
    events: list[DeviceEvent] = []
    async with listening(events, message_timeout_s=0.5) as (listener, connect):
        reader, writer = await connect()
        closed_at = None
        loop = asyncio.get_running_loop()
        start = loop.time()
        for byte in message(1)[:-2]:  # one byte every 50 ms: 6 s for this message
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)
            if reader.at_eof() or listener.open_connections == 0:
                closed_at = loop.time()
                break
        assert closed_at is not None and closed_at - start < 4.0
        assert "message not complete within 0.5 s" in refusals(events)[0].detail
        assert not any(isinstance(e, Reading) for e in events)


async def test_a_silent_connection_is_closed_at_its_first_byte_deadline_and_idle_is_not_a_refusal():
    events: list[DeviceEvent] = []
    async with listening(events, first_byte_timeout_s=0.3, idle_timeout_s=0.6) as (_listener, connect):
        silent, _ = await connect()
        assert await closed(silent)
        assert "no first byte within 0.3 s" in refusals(events)[0].detail
        reader, writer = await connect()
        writer.write(message(1))
        await reader.readuntil(b"\x1c\r")
        assert await closed(reader)  # idle after a message: closed, but not a refusal
        assert len(refusals(events)) == 1


async def test_refusal_events_are_rate_limited_with_a_count():
    events: list[DeviceEvent] = []
    async with listening(events, first_byte_timeout_s=0.1, report_interval_s=0.8) as (listener, connect):
        readers = [(await connect())[0] for _ in range(5)]
        for r in readers:
            await closed(r)
        assert listener.refused == 5 and len(refusals(events)) == 1 and refusals(events)[0].count == 1
        await until(lambda: len(refusals(events)) == 2, timeout_s=5)
        second = refusals(events)[1]
        assert second.count == 5 and "(4 refusals/evictions since the last report)" in second.detail


# -- the decision core -------------------------------------------------------------------
views = st.lists(
    st.builds(
        ConnView,
        st.integers(0, 10**6),
        st.sampled_from(["a", "b", "c"]),
        st.floats(0, 100),
        st.floats(0, 100),
        st.booleans(),
        st.one_of(st.none(), st.floats(0, 100)),
        st.booleans(),
    ).map(lambda v: replace(v, message_since=v.message_since if v.in_message else None)),
    max_size=12,
    unique_by=lambda v: v.conn_id,
)


@given(views, st.sampled_from(["a", "b", "d"]), st.integers(1, 8), st.integers(1, 4), st.floats(0, 110))
def test_admission_invariants(conns, peer, max_total, max_per_peer, now):
    decision = admit(conns, peer, max_total, max_per_peer, now)
    same = [c for c in conns if c.peer == peer]
    pool = same if len(same) >= max_per_peer else conns
    if decision.action == "accept":
        assert len(conns) < max_total and len(same) < max_per_peer
    elif decision.action == "evict":
        victim = decision.victim
        assert victim is not None and victim in pool
        if not victim.in_message:
            assert all(c.in_message or c.last_activity >= victim.last_activity for c in pool)
        elif stalled(victim, now, STALLED_MESSAGE_S):
            # A stalled message only when nothing in the pool was idle; the oldest first.
            assert all(c.in_message for c in pool)
            assert all(not stalled(c, now, STALLED_MESSAGE_S) or c.message_since >= victim.message_since for c in pool)
        else:
            # A misbehaving sender only when nothing was idle or stalled.
            assert victim.misbehaving
            assert all(c.in_message and not stalled(c, now, STALLED_MESSAGE_S) for c in pool)
    else:
        assert all(c.in_message and not stalled(c, now, STALLED_MESSAGE_S) and not c.misbehaving for c in pool)
        assert len(same) >= max_per_peer or len(conns) >= max_total


def test_reporter_holds_then_reports_with_the_count():
    r = RefusalReporter(10.0)
    assert r.note(0.0, "a") and r.take(0.0) == (1, "a")
    assert not r.note(1.0, "b") and not r.note(2.0, "c") and r.due() == 10.0
    assert r.ready(10.0) and r.take(10.0) == (3, "c (2 refusals/evictions since the last report)")
    assert r.due() is None


# -- finding 7: the listener's key ------------------------------------------------------
def test_a_listener_key_readable_by_others_is_refused_in_one_line(tmp_path):
    pki = make_pki(tmp_path / "pki")
    key = pki.dir / "broker.key"
    os.chmod(key, 0o644)
    with pytest.raises(ListenerTlsError, match=rf"^{key}: listener key mode 0644 is readable by others; chmod 600$"):
        server_context(pki.ca, str(pki.dir / "broker.pem"), str(key))
    config = parse_config(
        f'[gateway]\nbed_id = "B1"\nregistry_path = "{tmp_path / "reg.json"}"\n'
        f'[[devices]]\nid = "h"\nprotocol = "hl7"\nport = "tls://127.0.0.1:0"\ntls_ca_path = "{pki.ca}"\n'
        f'tls_cert_path = "{pki.dir / "broker.pem"}"\ntls_key_path = "{key}"\n'
    )
    with pytest.raises(ConfigError) as info:
        Gateway(config, outputs=[])
    assert str(info.value) == f"devices h: {key}: listener key mode 0644 is readable by others; chmod 600"
    os.chmod(key, 0o600)
    assert server_context(pki.ca, str(pki.dir / "broker.pem"), str(key)) is not None


async def test_a_sender_streaming_messages_back_to_back_is_never_taken_for_a_trickler():
    """Each read ends one message and starts the next (the outside tester's 10 messages
    a second): the message deadline runs from each message's own start."""
    events: list[DeviceEvent] = []
    async with listening(events, message_timeout_s=1.0) as (listener, connect):
        reader, writer = await connect()
        blocks = [message(n) for n in range(1, 32)]
        writer.write(blocks[0][:20])
        for n in range(1, 31):
            writer.write(blocks[n - 1][20:] + blocks[n][:20])  # the end of one and the start of the next
            await asyncio.sleep(0.1)
            async with asyncio.timeout(5):
                ack = await reader.readuntil(b"\x1c\r")
            assert f"|M{n}\r".encode() in ack
            assert listener._conns and not any(c.view().misbehaving for c in listener._conns.values())
        assert refusals(events) == []
