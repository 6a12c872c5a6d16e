"""The JSON-lines sink coalesces writes: one thread hop per batch delay, not per offer."""

import asyncio
import json
from typing import Any

from appliance.core.model import TechnicalEvent
from appliance.sinks import JsonlSink


async def test_a_burst_of_offers_is_one_write_and_flush_does_not_wait(tmp_path):
    sink = JsonlSink(tmp_path / "out.jsonl", batch_delay_s=0.1)
    writes: list[int] = []
    real = sink._write

    def counting(records: list[Any]) -> None:
        writes.append(len(records))
        real(records)

    sink._write = counting  # type: ignore[method-assign]
    task = asyncio.create_task(sink.run())
    try:
        for i in range(50):
            sink.offer(TechnicalEvent("d", "stale", count=i))
            await asyncio.sleep(0)  # offers spread over loop turns, as port reads are
        await asyncio.sleep(0.3)
        assert writes == [50]
        sink.offer(TechnicalEvent("d", "stale", count=50))
        await sink.flush()  # shutdown path: written now, not after the delay
        assert writes == [50, 1]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(x)["count"] for x in lines] == list(range(51))


def test_overflow_drops_the_oldest_and_counts():
    sink = JsonlSink("/nonexistent/x.jsonl", max_pending=3)
    for i in range(5):
        sink.offer(TechnicalEvent("d", "stale", count=i))
    assert sink.dropped == 2
    assert [r.count for r in sink._pending] == [2, 3, 4]  # type: ignore[union-attr]
