"""CPU time per decoded observation, codec + normalizer, against a same-run baseline.

Run: .venv/bin/python -m tests.bench.bench_decode
The baseline is the least work any Masimo reader must do on the same bytes (split
lines, split fields, float() the values), so the ratio says what our framing,
validation, flags, MDC mapping and ids cost on top — independent of how fast
this machine happens to be today.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from appliance.core.clock import MonotonicUTC
from appliance.core.model import Reading
from appliance.normalize import DeviceContext, Normalizer
from drivers.registry import make_codec
from hil.masimo_sim import masimo_line
from hil.nonin_sim import nonin_packet
from hil.scenarios import vitals_at

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def masimo_capture(lines: int) -> bytes:
    t0 = datetime(2026, 1, 1)
    return b"".join(
        masimo_line("radical7", t0.replace(second=i % 60, minute=(i // 60) % 60), vitals_at("desaturation", i))
        for i in range(lines)
    )


def nonin_capture(packets: int) -> bytes:
    return b"".join(nonin_packet(2, vitals_at("tachycardia", i / 3), pleth_phase=i) for i in range(packets))


def decode(protocol: str, data: bytes, chunk: int = 256) -> int:
    codec = make_codec(protocol, "bench", MonotonicUTC())
    norm = Normalizer(max_clock_skew_s=None)
    ctx = DeviceContext("bench", protocol, "ICU-1")
    n = 0
    for i in range(0, len(data), chunk):
        for ev in codec.feed(data[i : i + chunk]):
            if isinstance(ev, Reading):
                obs, _ = norm.normalize(ev, ctx, RECEIVED)
                n += obs is not None
    return n


def baseline(data: bytes) -> int:
    n = 0
    for line in data.split(b"\r\n"):
        for field in line.split(b" ")[2:]:
            _, _, value = field.partition(b"=")
            try:
                float(value.rstrip(b"%"))
                n += 1
            except ValueError:
                pass
    return n


def cpu_per_item(fn: Callable[[], int], repeat: int = 5) -> tuple[float, int]:
    best = float("inf")
    items = 0
    for _ in range(repeat):
        t0 = time.process_time()
        items = fn()
        best = min(best, time.process_time() - t0)
    return best / max(items, 1), items


def measure(lines: int = 2000) -> dict[str, float]:
    m = masimo_capture(lines)
    n = nonin_capture(lines)
    base, _ = cpu_per_item(lambda: baseline(m))
    masimo, _ = cpu_per_item(lambda: decode("masimo", m))
    masimo_big, _ = cpu_per_item(lambda: decode("masimo", masimo_capture(lines * 5)), repeat=2)
    nonin, _ = cpu_per_item(lambda: decode("nonin-2", n))
    return {
        "baseline_us": base * 1e6,
        "masimo_us": masimo * 1e6,
        "nonin2_us": nonin * 1e6,
        "masimo_ratio": masimo / base,
        "nonin2_ratio": nonin / base,
        "masimo_scaling": masimo_big / masimo,
    }


def main() -> None:
    r = measure()
    print(f"baseline (split + float) : {r['baseline_us']:.2f} us CPU per value")
    for name, key in (("masimo ", "masimo"), ("nonin-2", "nonin2")):
        cost, ratio = r[key + "_us"], r[key + "_ratio"]
        print(f"{name} codec+normalize  : {cost:.2f} us CPU per observation ({ratio:.1f}x baseline)")
    print(f"masimo per-observation cost, 5x larger input: {r['masimo_scaling']:.2f}x (1.0 = linear)")


if __name__ == "__main__":
    main()
