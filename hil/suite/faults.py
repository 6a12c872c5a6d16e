"""Faults of the box itself: a network partition, a full /data, a step of the box's own
clock, a power cut. Each target says which it can play (`FaultPlayer.plays`); a suite
asking for one it cannot play is refused at load (`check_plays`), so a run never
starts with a step it would skip.

A fault is played as begin, the trigger (the step's time), `down_s`, end, and the end
recorded as a step of its own named `NAME/end` (the heal, the space freed, the clock
set back, the power back), so an expectation can count from either. How each target
does it lives with the target (`hil/suite/local_box.py`, `hil/suite/ssh_target.py`,
`hil/suite/vm_target.py`); this module only sequences them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from hil.suite.spec import BOX_FAULTS, Step, Suite, SuiteError

if TYPE_CHECKING:
    from hil.broker import Broker
    from hil.suite.target import Target

__all__ = ["FAULTS", "FaultPlayer", "Rig", "check_plays", "play_fault"]

FAULTS: Final = frozenset(BOX_FAULTS)  # a device's reboot also has an end, but the bench plays it


Milestone = Callable[[str, float], None]  # (suffix, wall time) on a fault's way to its end


class FaultPlayer(Protocol):
    """What plays the box's faults for one target."""

    plays: frozenset[str]

    async def begin(self, action: str, offset_s: float) -> None: ...

    async def end(self, action: str, offset_s: float, milestone: Milestone) -> None:
        """The fault over. `milestone(suffix, wall time)` as they happen on the way, e.g.
        an OTA's reboot: `down` and `up`, marked as steps `NAME/down`, `NAME/up`."""
        ...


class Rig(FaultPlayer, Protocol):
    """The box around the gateway for one scenario: where the broker must listen for it,
    which serial port each bench device writes to, the gateway itself, its faults."""

    broker_host: str
    wiring: dict[str, str]  # device id -> the bench's serial port; a pty when absent

    def open(self) -> None: ...

    def target(self, broker: Broker, sock: Path) -> Target: ...

    def close(self) -> None: ...


def check_plays(suite: Suite, plays: frozenset[str], target: str, why: str = "") -> None:
    """SuiteError naming the first fault step the target cannot play."""
    for sc in suite.scenarios:
        for i, step in enumerate(sc.steps):
            if step.action in FAULTS and step.action not in plays:
                reason = f" ({why})" if why else ""
                raise SuiteError(f"scenario {sc.name!r} step[{i}]: --target {target} cannot play {step.action}{reason}")


Mark = Callable[[str, str, float], None]  # (step name, action, trigger time)


async def play_fault(player: FaultPlayer, step: Step, name: str, mark: Mark) -> None:
    """Begin, mark the trigger, hold `down_s`, end (an OTA's end waits for its commit,
    marking its milestones as they come), mark `NAME/end`."""
    await player.begin(step.action, step.offset_s)
    mark(name, step.action, time.time())
    await asyncio.sleep(step.down_s)
    await player.end(step.action, step.offset_s, lambda suffix, t: mark(f"{name}/{suffix}", step.action, t))
    mark(f"{name}/end", step.action, time.time())
