"""HL7 listener end to end: the longest event-loop stall while hostile senders talk
to a real tcp:// listener on 127.0.0.1 (issue #14).

Run: .venv/bin/python -m tests.bench.bench_hl7_loop

A probe task sleeps 1 ms in a loop and records how late it wakes: the figure is
the worst lateness (the longest time the loop could not run the alarm path) while
each payload is sent, answered or refused. Compare runs in the same session.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from appliance.core.clock import MonotonicUTC
from drivers.hl7.listener import Hl7Listener, ListenAddress
from drivers.hl7.mllp import frame
from tests.bench.bench_hl7_stall import deep_obx4, largest_admitted, many_rows, tiny_blocks


async def probe(worst: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        worst[0] = max(worst[0], time.perf_counter() - t0 - 0.001)


async def send(port: int, payload: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(3.0):
            await writer.drain()
            while await reader.read(65536):
                pass
    writer.close()


async def main() -> None:
    listener = Hl7Listener("bench", ListenAddress(False, "127.0.0.1", 0), lambda e: None, clock=MonotonicUTC())
    server = asyncio.create_task(listener.run())
    await listener.ready.wait()
    cases = {
        "OBX-4 with 20000 levels (40 KB)": deep_obx4(20000),
        "20000 OBX rows in one block (1 MB)": many_rows(20000),
        "64 KiB of tiny blocks": tiny_blocks(64 * 1024),
        "1 MiB block of 'A'": b"\x0b" + b"A" * (1 << 20) + b"\x1c\r",
        "64 KiB of VT": b"\x0b" * 65536,
        "64 KiB of VT FS VT FS ...": b"\x0b\x1c" * 32768,
        "64 KiB of empty blocks": b"\x0b\x1c\r" * 21845,
        "largest message within the bounds (254 rows)": largest_admitted(),
        "normal message (baseline)": frame(many_rows(20)[1:-2]),
    }
    for name, payload in cases.items():
        worst, stop = [0.0], asyncio.Event()
        task = asyncio.create_task(probe(worst, stop))
        await send(listener.bound_port, payload)
        stop.set()
        await task
        print(f"{name:40s} worst loop stall {worst[0] * 1000:9.1f} ms")
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
