"""The HL7 resend window survives a restart: bounded, persisted, off the alarm path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import DeviceEvent, Reading
from drivers.hl7.seen import Seen
from drivers.hl7.seen_file import keep_saved, load_seen, save_seen
from tests.drivers.hl7.test_identity import msg
from tests.drivers.hl7.test_listener import listening

_message = st.tuples(st.sampled_from(["A|F", "B|F"]), st.text(max_size=6), st.binary(max_size=20))
_messages = st.lists(_message, max_size=40)


@settings(max_examples=100)
@given(_messages, st.integers(1, 16))
def test_a_restored_memory_knows_exactly_the_newest_messages_it_held(
    messages: list[tuple[str, str, bytes]], bound: int
) -> None:
    before = Seen(max_entries=bound)
    for sender, control_id, body in messages:
        before.first_time(sender, control_id, body)
    after = Seen(max_entries=bound)
    after.load(before.to_bytes())
    assert after.to_bytes() == before.to_bytes()  # same digests, same order: same window after the restart
    assert len(after.to_bytes()) <= 100 + 2 * bound * 35  # bounded: digests only, whatever the messages held


def test_what_this_run_took_already_stays_the_newest_when_a_memory_is_loaded() -> None:
    old = Seen(max_entries=2)
    for n in range(3):
        old.first_time("S|F", str(n), b"x")
    now = Seen(max_entries=2)
    now.first_time("S|F", "new", b"x")
    now.load(old.to_bytes())
    assert not now.first_time("S|F", "new", b"x") and not now.first_time("S|F", "2", b"x")
    assert now.first_time("S|F", "0", b"x")  # beyond the bound: forgotten


def test_a_missing_file_is_an_empty_memory_and_a_malformed_one_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    load_seen(seen, str(tmp_path / "none"))
    assert seen.to_bytes() == Seen().to_bytes()
    for bad in (b"\xff", b"[]", b'{"v": 1, "messages": ["zz"], "ids": []}', b'{"v": 9}'):
        (tmp_path / "bad").write_bytes(bad)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            load_seen(seen, str(tmp_path / "bad"))
        assert "malformed" in caplog.text
    assert seen.first_time("S|F", "1", b"x")


async def test_the_memory_is_saved_when_it_changed_and_once_more_at_the_stop(tmp_path: Path) -> None:
    path = str(tmp_path / "seen")
    seen = Seen()
    saver = asyncio.create_task(keep_saved(seen, path, interval_s=0.01))
    seen.first_time("S|F", "1", b"x")
    async with asyncio.timeout(5):
        while not Path(path).exists():
            await asyncio.sleep(0.01)
    seen.first_time("S|F", "2", b"x")
    saver.cancel()  # before the next interval: the stop writes it
    await asyncio.gather(saver, return_exceptions=True)
    restored = Seen()
    load_seen(restored, path)
    assert not restored.first_time("S|F", "1", b"x") and not restored.first_time("S|F", "2", b"x")


async def test_a_failing_disk_is_logged_once_and_the_listener_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    saver = asyncio.create_task(keep_saved(seen, str(tmp_path / "no" / "dir" / "seen"), interval_s=0.01))
    with caplog.at_level(logging.WARNING):
        for n in range(3):
            seen.first_time("S|F", str(n), b"x")
            await asyncio.sleep(0.03)
    saver.cancel()
    await asyncio.gather(saver, return_exceptions=True)
    assert caplog.text.count("not saved") == 1


Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def send(connect: Connect, data: bytes) -> None:
    reader, writer = await connect()
    writer.write(data)
    async with asyncio.timeout(5):
        await reader.readuntil(b"\x1c\r")
    writer.close()


async def test_a_resend_after_a_listener_restart_is_used_once_with_a_persisted_window(tmp_path: Path) -> None:
    path = str(tmp_path / "hl7.seen")
    events: list[DeviceEvent] = []
    async with listening(events, seen_path=path) as (_listener, connect):
        await send(connect, msg("A", 97))
    async with listening(events, seen_path=path) as (_listener, connect):  # the gateway restarted
        await send(connect, msg("A", 97, ts="20261202080000"))  # the sender's retry, re-stamped
        await send(connect, msg("B", 96))
    assert [e.value for e in events if isinstance(e, Reading)] == [97.0, 96.0]


def test_save_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "seen"
    save_seen(b"one", str(path))
    save_seen(b"two", str(path))
    assert path.read_bytes() == b"two" and not (tmp_path / "seen.tmp").exists()
