"""What a family's simulator hook gives the bench: `FamilySim`.

A `DeviceFamily.simulator` is "module:function"; the function takes no argument
and returns the family's simulator. `bedside demo` and `bedside hil` ask the
registry's families for theirs and never name a family, so a family registered
with `drivers.registry.register()` is simulated without any edit here.

The hooks stay strings in drivers/ (drivers may not import the bench); this is
where they are resolved, on first use only: building the command line must not
import every simulator (and the radio stack) for `bedside run`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from drivers import registry
from drivers.family import DeviceFamily

if TYPE_CHECKING:
    from hil.ble_radio import SimRadio

__all__ = [
    "DemoDevice",
    "DemoEnv",
    "FamilySim",
    "SimUsageError",
    "demo_devices",
    "family_named",
    "line_keys",
    "simulator_for",
]


class SimUsageError(ValueError):
    """A simulator's settings that its family refuses (one line for the command line)."""


@dataclass(frozen=True, slots=True)
class DemoDevice:
    """One device of a family in `bedside demo`."""

    device_id: str
    protocol: str
    bed: str  # the demo lists its devices in bed order (ICU-2 before ICU-10)
    settings: Any = None  # the family simulator's own settings for this device


def _sim_radio() -> SimRadio:
    from hil.ble_radio import SimRadio  # bleak: only where a radio is simulated

    return SimRadio()


@dataclass(slots=True)
class DemoEnv:
    """What the demo lends the simulators: a folder for ptys, the speed, the simulated radio."""

    workdir: Path
    speed: float = 1.0
    # One radio for all radio devices: the gateway gets its backend before any starts.
    radio: SimRadio = field(default_factory=_sim_radio)


@runtime_checkable
class FamilySim(Protocol):
    """A family's simulator as the demo uses it."""

    @property
    def demo(self) -> Sequence[DemoDevice]:
        """The family's devices in the demo (none: the family is not in the demo)."""

    def port(self, device: DemoDevice, env: DemoEnv) -> str:
        """The device's `port =`: where the gateway reaches the simulated device."""

    def config(self, device: DemoDevice, port: str) -> Mapping[str, object]:
        """Further device keys (beyond id, protocol, port, bed_id) the device needs."""

    def run(self, device: DemoDevice, port: str, env: DemoEnv) -> Coroutine[Any, Any, None]:
        """The device's stream until cancelled. Called before the gateway starts: what
        the call sets up at once (a peripheral on the radio) is there when it does."""


def family_named(name: str) -> DeviceFamily:
    """The registered family called `name`; KeyError when none is."""
    for family in registry.FAMILIES:
        if family.name == name:
            return family
    raise KeyError(name)


def simulator_for(family: DeviceFamily) -> FamilySim | None:
    """The family's simulator (None: it has none)."""
    if not family.simulator:
        return None
    module, _, function = family.simulator.partition(":")
    sim = getattr(importlib.import_module(module), function)()
    if not isinstance(sim, FamilySim):
        raise TypeError(f"{family.simulator}: returned {type(sim).__name__}, not a simulator")
    return sim


def _bed_order(device: DemoDevice) -> list[tuple[int, str]]:
    # Numbers compare as numbers, so ICU-10 follows ICU-9.
    return [(int(part), "") if part.isdigit() else (0, part) for part in re.split(r"(\d+)", device.bed)]


def demo_devices() -> list[tuple[FamilySim, DemoDevice]]:
    """Every registered family's demo devices, in bed order."""
    found = [
        (sim, device)
        for family in registry.FAMILIES
        if (sim := simulator_for(family)) is not None
        for device in sim.demo
    ]
    return sorted(found, key=lambda pair: _bed_order(pair[1]))


def line_keys(protocol: str, port: str, baud: int) -> dict[str, object]:
    """The keys a line device's transport takes: its simulator's baud, the line settings
    its family requires (the registry's line rules) and a stale bound; none for a listener."""
    family = registry.family_for(protocol)
    transport = registry.transport_for(family, port)
    if "baud" not in transport.keys:
        return {}  # a listener: no line, no stale bound
    fixed = {
        rule.setting: rule.allowed[0]
        for rule in getattr(transport, "rules", {}).get(protocol, ())
        if rule.setting not in ("baud", "xonxoff")
    }
    slow = fixed.get("rtscts") is True  # a monitor sending records every 5 s
    return {"baud": baud, **fixed, "stale_after_s": 10.0 if slow else 3.0}
