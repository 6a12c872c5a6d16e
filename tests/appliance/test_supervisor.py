import asyncio

from appliance.config import SupervisorConfig
from appliance.core.model import TechnicalEvent
from appliance.supervisor import Supervisor

FAST = SupervisorConfig(restart_min_s=0.01, restart_max_s=0.05, stable_after_s=10, shutdown_timeout_s=1)


async def test_crashing_task_is_reported_and_restarted_with_backoff_while_others_run():
    reports: list[TechnicalEvent] = []
    runs = {"bad": 0, "good": 0}

    async def bad() -> None:
        runs["bad"] += 1
        raise RuntimeError("driver bug")

    async def good() -> None:
        while True:
            runs["good"] += 1
            await asyncio.sleep(0.01)

    sup = Supervisor(FAST, reports.append)
    sup.start("link:bad", bad, "dev-bad")
    sup.start("link:good", good)
    await asyncio.sleep(0.3)
    assert runs["bad"] >= 3
    assert runs["good"] >= 10  # the healthy link never noticed
    assert all(r.kind == "driver_crashed" and r.device_id == "dev-bad" for r in reports)
    assert "RuntimeError: driver bug" in reports[0].detail
    assert [r.count for r in reports] == list(range(1, len(reports) + 1))
    assert await sup.stop()


async def test_stop_cancels_within_the_timeout():
    sup = Supervisor(FAST, lambda r: None)

    async def forever() -> None:
        await asyncio.Event().wait()

    sup.start("a", forever)
    sup.start("b", forever)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await sup.stop()
    assert loop.time() - t0 < 0.5


async def test_task_that_ignores_cancel_is_reported_not_waited_for_forever():
    sup = Supervisor(SupervisorConfig(shutdown_timeout_s=0.5), lambda r: None)
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue

    sup.start("stubborn", stubborn)
    await asyncio.sleep(0)
    assert await sup.stop() is False
    released.set()  # let the test's loop end cleanly
    await asyncio.sleep(0.01)
