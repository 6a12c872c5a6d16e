"""The HL7 stall bench as a test: no hostile input costs a loop turn more than the
costliest message the bounds admit (a ratio from the same run, never an absolute time)."""

import statistics

from appliance.core.clock import MonotonicUTC
from drivers.hl7.codec import Hl7Codec
from drivers.hl7.listener import MESSAGES_PER_TURN, SLICE_BYTES
from tests.bench.bench_hl7_stall import (
    bare_no_boundary,
    deep_obx4,
    huge_block,
    largest_admitted,
    many_rows,
    no_vt,
    tiny_blocks,
    worst_feed,
)


def _worst(data: bytes, *, unframed: bool = False, read: int = SLICE_BYTES) -> float:
    """The longest loop turn, fed as the listener feeds (4 KiB slices, its per-turn message cap)."""

    def make() -> Hl7Codec:
        return Hl7Codec("b", MonotonicUTC(), unframed=unframed, max_messages_per_feed=MESSAGES_PER_TURN)

    # Median of three runs: one preempted turn on a shared machine is not the parser's cost.
    return statistics.median(worst_feed(data, make, read)[0] for _ in range(3))


def test_hostile_hl7_costs_no_more_per_loop_turn_than_the_largest_admitted_message():
    baseline = _worst(largest_admitted())
    hostile = {
        "20,000-level OBX-4": _worst(deep_obx4(20_000)),
        "20,000 OBX rows": _worst(many_rows(20_000)),
        "1 MiB block": _worst(huge_block(1 << 20)),
        "1 MiB without VT": _worst(no_vt(1 << 20)),
        "64 KiB of tiny blocks": _worst(tiny_blocks(64 * 1024)),
        "unframed 4 MiB without a boundary": _worst(bare_no_boundary(4 << 20), unframed=True),
    }
    print({k: f"{v / baseline:.2f}x" for k, v in hostile.items()}, f"baseline {baseline * 1000:.1f} ms")
    assert {k: v for k, v in hostile.items() if v > 2 * baseline} == {}
