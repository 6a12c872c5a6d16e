"""HL7 worst-case event-loop cost: how long one `Hl7Codec.feed` call (what the
listener runs inside one loop turn) takes for hostile inputs (issue #14).

Run: .venv/bin/python -m tests.bench.bench_hl7_stall

Each case is fed the way the listener feeds it: in reads of at most 64 KiB, and
the figure is the slowest single feed() call (the longest loop stall) plus the
total. Times are wall clock on this machine; compare before/after in one run.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

from appliance.core.clock import MonotonicUTC
from drivers.hl7.codec import Hl7Codec
from drivers.hl7.mllp import frame

READ = 64 * 1024
HEAD = "MSH|^~\\&|S|F|||20260101120000||ORU^R01^ORU_R01|ID{n}|P|2.6|||AL|NE\rOBR|1|||x|||20260101120000\r"
ROW = "OBX|{i}|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|{where}|97|262688^MDC_DIM_PERCENT^MDC\r"


def deep_obx4(levels: int) -> bytes:
    return frame((HEAD.format(n=1) + ROW.format(i=1, where=".".join(["1"] * levels))).encode())


def many_rows(rows: int) -> bytes:
    # Short rows so that 20,000 of them fit in one block of under 1 MiB.
    body = "".join(f"OBX|{i}|NM|150456^X^MDC|1.1.1.{i}|97|262688^^MDC\r" for i in range(1, rows + 1))
    return frame((HEAD.format(n=2) + body).encode())


def huge_block(size: int) -> bytes:
    return b"\x0b" + b"A" * size + b"\x1c\r"


def no_vt(size: int) -> bytes:
    return b"MSH|" + b"x" * size


def max_rows(rows: int, pad: int) -> bytes:
    """Rows as costly as the bounds allow: long, escaped, many components."""
    filler = ("a\\F\\b^" * (pad // 8))[:pad]
    body = "".join(
        f"OBX|{i}|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.{i}|97|262688^MDC_DIM_PERCENT^MDC|{filler}|"
        f"N~H~L|||R|||20260101120000+0100||||dev^{filler}\r"
        for i in range(1, rows + 1)
    )
    return frame((HEAD.format(n=3) + body).encode())


def largest_admitted() -> bytes:
    """The costliest message the bounds admit: 254 crafted rows, padded up to the block bound."""
    from drivers.hl7.mllp import MAX_BLOCK_BYTES

    pad = 8
    while len(max_rows(254, pad + 8)) < MAX_BLOCK_BYTES:
        pad += 8
    return max_rows(254, pad)


def tiny_blocks(size: int) -> bytes:
    one = frame(b"MSH|^~\\&|S|F|||x||ORU^R01|1|P|2.6\r")
    return one * (size // len(one))


def bare_no_boundary(size: int) -> bytes:
    return b"MSH|^~\\&|" + b"x" * size


def worst_feed(data: bytes, make: Callable[[], Hl7Codec], read: int = READ) -> tuple[float, float]:
    """Slowest loop turn and total, feeding like the listener (backlog in later turns)."""
    codec = make()
    worst = total = 0.0
    for i in range(0, len(data), read):
        chunk = data[i : i + read]
        while True:
            t0 = time.perf_counter()
            codec.feed(chunk)
            codec.data_to_send()
            dt = time.perf_counter() - t0
            worst, total = max(worst, dt), total + dt
            chunk = b""
            if not codec.backlog:
                break
    return worst, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the inputs (the old code is quadratic)")
    args = parser.parse_args()
    s = args.scale
    cases = {
        f"OBX-4 with {int(20000 * s)} levels ({len(deep_obx4(int(20000 * s))) // 1024} KiB)": deep_obx4(int(20000 * s)),
        f"{int(20000 * s)} OBX rows ({len(many_rows(int(20000 * s))) // 1024} KiB)": many_rows(int(20000 * s)),
        f"MLLP block of {int((1 << 20) * s) // 1024} KiB of 'A'": huge_block(int((1 << 20) * s)),
        f"{int((1 << 20) * s) // 1024} KiB without VT over TCP": no_vt(int((1 << 20) * s)),
    }
    rows = largest_admitted()
    cases[f"254 costly OBX rows ({len(rows) // 1024} KiB)"] = rows
    for name, data in cases.items():
        worst, total = worst_feed(data, lambda: Hl7Codec("bench", MonotonicUTC()))
        print(f"{name:50s} worst turn {worst * 1000:9.1f} ms   total {total * 1000:9.1f} ms")
    tiny = tiny_blocks(READ)
    for limit in (None, 16):
        worst, total = worst_feed(
            tiny, functools.partial(Hl7Codec, "bench", MonotonicUTC(), max_messages_per_feed=limit)
        )
        name = f"64 KiB of tiny blocks, {limit or 'no'} limit per feed"
        print(f"{name:50s} worst turn {worst * 1000:9.1f} ms   total {total * 1000:9.1f} ms")
    for size in (4 << 20, 16 << 20):
        data = bare_no_boundary(size)
        worst, total = worst_feed(data, lambda: Hl7Codec("bench", MonotonicUTC(), unframed=True), read=4096)
        name = f"unframed {size >> 20} MiB without a boundary (4 KiB reads)"
        print(f"{name:50s} worst turn {worst * 1000:9.1f} ms   total {total * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
