"""HL7 over MLLP end to end: a sender on a pseudo-terminal and over TCP (plain and TLS 1.3
with client certificates), ACKs, the sender's resend after a lost ACK (used once), a cable
pull on the serial line and a dropped TCP connection."""

import asyncio
import ssl
from datetime import datetime

import pytest

from appliance.core.clock import MonotonicUTC
from appliance.core.model import DeviceEvent, Reading
from drivers.hl7.codec import Hl7Codec
from drivers.hl7.listener import Hl7Listener, ListenAddress, server_context
from drivers.serial.link import LinkTiming, SerialLink
from drivers.serial.transport import PortSettings
from hil.broker import Pki
from hil.hl7_sim import Hl7SenderSim, run_tcp
from hil.intellivue_bench import MonitorBench
from hil.scenarios import Vitals
from hil.simulate import PtyPort
from tests.integration.helpers import until


def values(events: list[DeviceEvent], label: str) -> list[float | None]:
    return [e.value for e in events if isinstance(e, Reading) and e.label == label]


SPO2 = "150456^MDC_PULS_OXIM_SAT_O2"


def sender(period_s: float = 0.5, ack_timeout_s: float = 1.0) -> Hl7SenderSim:
    return Hl7SenderSim(lambda t: Vitals(95, 80, 2.0), datetime.now, period_s=period_s, ack_timeout_s=ack_timeout_s)


async def test_hl7_over_a_serial_line_with_a_cable_pull(tmp_path):
    path = tmp_path / "hl7"
    port = PtyPort(path, 115200)
    port.open()
    sim = sender()
    bench = MonitorBench(sim, port)
    bench_task = asyncio.create_task(bench.run())
    events: list[DeviceEvent] = []
    codec = Hl7Codec("hl7-serial", MonotonicUTC())
    link = SerialLink(PortSettings(str(path), baud=115200), codec, events.append, LinkTiming(5.0, 0.1, 0.3))
    link_task = asyncio.create_task(link.run())
    try:
        await until(lambda: len(sim.acks) >= 3)
        assert {code for code, _ in sim.acks} == {"CA"} and values(events, SPO2)[0] == 95.0
        # The cable is pulled while a message is on its way: no ACK, so the sender resends it.
        bench.go_silent(0.6)  # what the gateway writes meanwhile is lost with the cable
        await bench.pull_cable(1.5)
        await until(lambda: sim.resent >= 1)
        sent = sim.sent
        await until(lambda: len(sim.acks) >= sent + 2)
        # Every message was used once, however often it crossed the line.
        assert len(values(events, SPO2)) == len({mid for _, mid in sim.acks})
    finally:
        for task in (link_task, bench_task):
            task.cancel()
        await asyncio.gather(link_task, bench_task, return_exceptions=True)
        port.close()


async def test_hl7_over_tcp_with_a_dropped_connection():
    events: list[DeviceEvent] = []
    listener = Hl7Listener("hl7-tcp", ListenAddress(False, "127.0.0.1", 0), events.append, clock=MonotonicUTC())
    server = asyncio.create_task(listener.run())
    await listener.ready.wait()
    sim = sender()
    client = asyncio.create_task(run_tcp(sim, "127.0.0.1", listener.bound_port))
    try:
        await until(lambda: len(sim.acks) >= 3)
        assert {code for code, _ in sim.acks} == {"CA"}
        # The network drops the connection (listener restarted): the sender reconnects and goes on.
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        before = len(sim.acks)
        listener2 = Hl7Listener(
            "hl7-tcp", ListenAddress(False, "127.0.0.1", listener.bound_port), events.append, clock=MonotonicUTC()
        )
        server = asyncio.create_task(listener2.run())
        await until(lambda: len(sim.acks) >= before + 3)
        assert len(values(events, SPO2)) >= len({mid for _, mid in sim.acks})
    finally:
        for task in (client, server):
            task.cancel()
        await asyncio.gather(client, server, return_exceptions=True)


def client_ctx(pki: Pki, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_hl7_over_tls_needs_a_client_certificate_from_our_ca(pki: Pki):
    events: list[DeviceEvent] = []
    ctx = server_context(pki.ca, str(pki.dir / "broker.pem"), str(pki.dir / "broker.key"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    listener = Hl7Listener("hl7-tls", ListenAddress(True, "127.0.0.1", 0), events.append, ctx, clock=MonotonicUTC())
    server = asyncio.create_task(listener.run())
    await listener.ready.wait()
    port = listener.bound_port
    try:
        good = client_ctx(pki, str(pki.dir / "gw-2.pem"), str(pki.dir / "gw-2.key"))
        sim = sender()
        client = asyncio.create_task(run_tcp(sim, "localhost", port, good, duration_s=10))
        await until(lambda: len(sim.acks) >= 2)
        client.cancel()
        await asyncio.gather(client, return_exceptions=True)
        got = len(events)
        # A certificate from another CA, and plaintext, are refused: nothing is read from them.
        rogue = client_ctx(pki, str(pki.dir / "rogue.pem"), str(pki.dir / "rogue.key"))
        rogue_sim = sender()
        await run_tcp(rogue_sim, "localhost", port, rogue, duration_s=2)
        plain_sim = sender()
        await run_tcp(plain_sim, "127.0.0.1", port, None, duration_s=2)
        assert rogue_sim.acks == [] and plain_sim.acks == [] and len(events) == got
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


def test_a_tls_listener_without_its_context_fails_closed():
    with pytest.raises(ValueError, match="fail closed"):
        Hl7Listener("x", ListenAddress(True, "127.0.0.1", 0), lambda e: None, clock=MonotonicUTC())


def test_a_sender_that_restarts_sends_its_unacknowledged_message_first_with_the_same_id() -> None:
    sim = sender(period_s=0.5, ack_timeout_s=30.0)
    first = sim.poll(1.0)
    assert first, "the sender sends its first report"
    sim.reboot()  # the connection dropped before the commit ACK came back
    again = sim.poll(1.1)
    assert again == first and sim.resent == 1  # same bytes, same MSH-10: the receiver can drop the duplicate
    assert sim.poll(1.2) == b""  # and it waits for that one's ACK before anything new
