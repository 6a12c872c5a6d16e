"""The HL7 listener's message memory (`Seen`) on disk: a bounded, persisted resend window.

A sender whose ACK was lost resends; if the gateway restarted meanwhile, an
in-memory window would use the message twice (same observation ids, so consumers
deduplicate, but the alarm engine would see old values again). With `seen_path`
set, the memory is read once at the listener's start and written whenever it
changed, at most every `SAVE_INTERVAL_S`, by a thread (`asyncio.to_thread`): the
loop that runs the alarm path only takes a snapshot (bytes) of at most
2 x 1,024 digests. Atomic (write a temporary file, fsync, rename). What is lost on
a power cut is at most the last interval's messages, whose resends are then used
again under the same ids.

A missing file is an empty memory; an unreadable or malformed one is logged and
replaced (the listener must start whatever a cache file holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Final

from drivers.hl7.seen import Seen

__all__ = ["SAVE_INTERVAL_S", "keep_saved", "load_seen", "save_seen"]

log = logging.getLogger(__name__)

SAVE_INTERVAL_S: Final = 1.0


def load_seen(seen: Seen, path: str) -> None:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("HL7 message memory %s not read (resends after this restart are used again): %s", path, exc)
        return
    try:
        seen.load(data)
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("HL7 message memory %s is malformed, starting empty: %s", path, exc)


def save_seen(data: bytes, path: str) -> None:
    """Atomically replace `path` with `data` (in a thread: it may wait for the disk)."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def keep_saved(seen: Seen, path: str, interval_s: float = SAVE_INTERVAL_S) -> None:
    """Save the memory whenever it changed, until cancelled; then once more."""
    saved = 0  # what is on disk is what was loaded (loading is not a change)
    failing = False
    try:
        while True:
            await asyncio.sleep(interval_s)
            if seen.changes == saved:
                continue
            changes, data = seen.changes, seen.to_bytes()  # snapshot in the loop: the thread only writes
            try:
                await asyncio.to_thread(save_seen, data, path)
            except OSError as exc:
                if not failing:  # once per outage, not once a second
                    log.warning("HL7 message memory %s not saved: %s", path, exc)
                failing = True
                continue
            saved, failing = changes, False
    finally:
        # Stopping: the listener's connections are closing, so writing here holds no
        # reading up, and an await could be cancelled again before the file is written.
        if seen.changes != saved:
            with contextlib.suppress(OSError):
                save_seen(seen.to_bytes(), path)
