"""What a device family tells the gateway about itself: `DeviceFamily`.

One descriptor per family (drivers/<family>/family.py) holds everything the
gateway, the config, `bedside decode` and the bench need to know: the protocol
names it answers to, how to make its codec (with the gateway's clock), the
transports it runs on (with the line settings a serial profile enforces), its
label -> MDC/UCUM table, how its flags grade a value, and its simulator. The
registry (drivers/registry.py) selects among them; nothing else names a family.

Descriptors import no codec: factories and tables are loaded when first used, so
a box pays start-up time and memory only for the families its devices speak.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from appliance.core.clock import Clock
from appliance.core.model import DeviceEvent
from appliance.core.terms import Term
from appliance.core.tls import TlsPaths
from drivers.devices import DeviceSettings

if TYPE_CHECKING:
    from drivers.codec import Codec

__all__ = [
    "CodecFactory",
    "CodecSettings",
    "DeviceFamily",
    "DeviceTime",
    "Link",
    "LinkEnv",
    "LinkSetupError",
    "Transport",
    "cached_table",
]


class LinkSetupError(ValueError):
    """A device's link cannot be built from its settings (one line naming the files)."""


@dataclass(frozen=True, slots=True)
class CodecSettings:
    # The bytes come from a capture file (`bedside decode`), not from a live device.
    capture: bool = False
    # The device's family-specific keys (DeviceFamily.options), already validated.
    options: Mapping[str, Any] = field(default_factory=dict)


# (protocol name, device id, the gateway's clock, settings) -> a sans-IO codec.
CodecFactory = Callable[[str, str, Clock, CodecSettings], "Codec"]


class Link(Protocol):
    """A running device link (serial port, radio, listener)."""

    @property
    def connected(self) -> bool: ...

    def run(self) -> Coroutine[Any, Any, None]: ...


@dataclass(frozen=True, slots=True)
class LinkEnv:
    """What the gateway lends a transport to build a device's link."""

    emit: Callable[[DeviceEvent], None]
    clock: Clock
    opener: Any  # serial ports: how to open one (tests put a pty or memory stream here)
    radio: Callable[[], Any]  # the radio backend, made on first use
    cursor: Any  # stored-record cursors (the registry), for devices that keep records
    uplink_tls: TlsPaths  # the uplink's TLS files: what a listener's own fall back to (resolve_tls)


class Transport(Protocol):
    """How devices of a family are reached; the port's spelling says which one."""

    @property
    def kind(self) -> str:
        """ "serial", "radio", "listener": names the device type in messages."""

    @property
    def device(self) -> type[DeviceSettings]:
        """The settings of a device on this transport: only the keys that apply to it."""

    @property
    def keys(self) -> frozenset[str]:
        """The device keys that apply beyond those every device takes (`device`'s)."""

    @property
    def refusal(self) -> str:
        """Why a device of another family cannot use this transport."""

    def claims(self, port: str) -> bool: ...

    def port_problem(self, port: str) -> str: ...

    def takes_any(self, port: str) -> bool:
        """True when the port takes the first device in range, not one by its address: at a
        ward that can be the next bed's device, so the site config must allow it (bench)."""

    def port_identity(self, port: str) -> str: ...

    def device_problem(self, protocol: str, dev: Any, uplink: TlsPaths) -> tuple[str, str] | None:
        """(key, problem) when the device's settings do not fit the family here."""

    def make_link(self, family: DeviceFamily, dev: Any, env: LinkEnv) -> Link: ...


class DeviceTime(enum.StrEnum):
    """What a device's own timestamp says about when it measured (issue 17, the record contract).

    Only a live stream is judged by skew: its time far from the gateway's is a wrong
    clock. A source that can legitimately send old data keeps its time, and one
    older than the skew bound is flagged `late`, not replaced.
    """

    LIVE = "live"  # streams as it measures
    EPISODIC = "episodic"  # measures now and then and may deliver later (a cuff, a meter, a spot check)
    STATED = "stated"  # a time with an explicit UTC offset is the sender's statement; one without is LIVE


@dataclass(frozen=True, slots=True)
class DeviceFamily:
    name: str  # the family's key (label tables, unmapped counters)
    protocols: tuple[str, ...]  # names `protocol =` and `--protocol` accept
    codec: CodecFactory
    transports: tuple[Transport, ...]  # the first is the family's own (its refusal is used)
    # label -> term; None: the label has no agreed MDC term (counted, never guessed)
    terms: Callable[[str], Term | None]
    # The label table itself, for families whose labels other families' terms resolve against.
    table: Callable[[], Mapping[str, Term]] = dict
    invalid_flags: frozenset[str] = frozenset()  # a value with one of these is invalid
    questionable_flags: frozenset[str] = frozenset()  # ... questionable
    # transport kind -> settings dataclass of further device keys for this family there
    # (keys only one family takes on a transport; the transport's own are its `device`)
    options: Mapping[str, type] = field(default_factory=dict)
    # "module:function" of the bench's simulator (hil/), resolved by the bench only
    simulator: str = ""
    summary: str = ""  # one phrase for help texts
    # protocol -> how its device times are judged (normalizer); unlisted protocols are LIVE
    device_time: Mapping[str, DeviceTime] = field(default_factory=dict)


def cached_table(
    load: Callable[[], Mapping[str, Term]],
) -> tuple[Callable[[str], Term | None], Callable[[], Mapping[str, Term]]]:
    """(label lookup, table) over a table built once, on first use."""
    table = functools.cache(load)
    return (lambda label: table().get(label)), table
