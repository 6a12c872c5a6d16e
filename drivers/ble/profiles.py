"""The BLE health profiles the gateway reads: service, characteristics, behaviour.

Continuous profiles (heart rate, PLX continuous) stream while connected: their
disconnection and silence are technical events. Episodic devices (cuff, scale,
thermometer, glucose meter, PLX spot-check) connect to deliver a reading and go
back to sleep: a disconnect is their normal state and raises nothing. Profiles
with a record store are caught up through the Record Access Control Point on
every connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from drivers.ble.codec import CHARACTERISTICS, uuid16

__all__ = ["BATTERY_LEVEL", "CURRENT_TIME", "PLX_FEATURES", "PROFILES", "RACP", "Profile", "Subscription"]

Mode = Literal["notify", "indicate"]


@dataclass(frozen=True, slots=True)
class Subscription:
    characteristic: str  # name in drivers.ble.codec.CHARACTERISTICS
    mode: Mode

    @property
    def uuid(self) -> str:
        return CHARACTERISTICS[self.characteristic].uuid


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    service: int
    subscriptions: tuple[Subscription, ...]
    continuous: bool
    stored_records: bool = False  # Record Access Control Point catch-up
    features: int | None = None  # features characteristic read on connect

    @property
    def service_uuid(self) -> str:
        return uuid16(self.service)


RACP: Final = uuid16(0x2A52)
PLX_FEATURES: Final = uuid16(0x2A60)
BATTERY_LEVEL: Final = uuid16(0x2A19)
CURRENT_TIME: Final = uuid16(0x2A2B)
BATTERY_SERVICE: Final = uuid16(0x180F)
CURRENT_TIME_SERVICE: Final = uuid16(0x1805)

PROFILES: Final = {
    p.name: p
    for p in (
        Profile("heart-rate", 0x180D, (Subscription("heart-rate", "notify"),), continuous=True),
        Profile(
            "plx-continuous", 0x1822, (Subscription("plx-continuous", "notify"),), continuous=True, features=0x2A60
        ),
        Profile("plx-spot", 0x1822, (Subscription("plx-spot", "indicate"),), continuous=False, features=0x2A60),
        Profile("temperature", 0x1809, (Subscription("temperature", "indicate"),), continuous=False),
        Profile("blood-pressure", 0x1810, (Subscription("blood-pressure", "indicate"),), continuous=False),
        Profile(
            "glucose",
            0x1808,
            (Subscription("glucose", "notify"), Subscription("glucose-context", "notify")),
            continuous=False,
            stored_records=True,
        ),
        Profile("weight", 0x181D, (Subscription("weight", "indicate"),), continuous=False),
    )
}
