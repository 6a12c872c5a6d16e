"""appliance.core.servers: a listener with a client that never hangs up still stops (the
hang was Python 3.12+'s: serve_forever and wait_closed wait for every connection)."""

import asyncio

from appliance.core.servers import close_server, serve_until_cancelled

STOP_BOUND_S = 5.0  # a hang, not slowness, is what fails this


async def test_a_listener_stops_while_a_client_stays_connected_and_its_handler_ends():
    handler_ended = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # until the connection goes
        finally:
            writer.close()
            handler_ended.set()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def listen() -> None:
        try:
            await serve_until_cancelled()
        finally:
            await close_server(server)

    listening = asyncio.create_task(listen())
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)  # and never hangs up
    writer.write(b"hello")
    await writer.drain()
    await asyncio.sleep(0.05)
    listening.cancel()
    done, _ = await asyncio.wait({listening}, timeout=STOP_BOUND_S)
    assert done == {listening}, "the listener did not stop with a client connected"
    assert not server.is_serving()
    writer.close()
    await asyncio.wait_for(handler_ended.wait(), STOP_BOUND_S)


async def test_closing_a_server_nobody_connected_to_returns_at_once():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    await asyncio.wait_for(close_server(server), STOP_BOUND_S)
    assert not server.is_serving()
