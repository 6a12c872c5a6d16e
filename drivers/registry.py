"""The one place that selects a device family: by protocol name, among `FAMILIES`.

Config, normalizer, gateway, `bedside decode` and the command line ask here and
never name a family themselves. Adding a family is its folder under drivers/ plus
one line in `FAMILIES`; tests add one for a while with `register()`.

Order matters once: where two families map one MDC code with different units, the
later one's term is what messages carrying their own terms are filed under.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from drivers.ble.family import FAMILY as _BLE
from drivers.datex.family import FAMILY as _DATEX
from drivers.family import CodecSettings, DeviceFamily, DeviceTime, Transport
from drivers.hl7.family import FAMILY as _HL7
from drivers.intellivue.family import FAMILY as _INTELLIVUE
from drivers.masimo.family import FAMILY as _MASIMO
from drivers.medibus.family import FAMILY as _MEDIBUS
from drivers.nonin.family import FAMILY as _NONIN

if TYPE_CHECKING:
    from appliance.core.clock import Clock
    from appliance.core.model import DeviceEvent
    from appliance.core.terms import Term
    from drivers.codec import Codec
    from drivers.family import Link
    from drivers.hl7.terms import CarriedTerms

__all__ = [
    "FAMILIES",
    "carried_terms",
    "census_listener",
    "device_time",
    "family_for",
    "flag_classes",
    "lookup",
    "make_codec",
    "protocols",
    "register",
    "term_tables",
    "transport_for",
    "transports",
]

_BUILT_IN: Final = (_MASIMO, _NONIN, _BLE, _MEDIBUS, _DATEX, _INTELLIVUE, _HL7)
FAMILIES: tuple[DeviceFamily, ...] = _BUILT_IN


def _clear() -> None:
    _by_protocol.cache_clear()
    lookup.cache_clear()
    carried_terms.cache_clear()
    flag_classes.cache_clear()
    device_time.cache_clear()


@contextlib.contextmanager
def register(family: DeviceFamily) -> Iterator[DeviceFamily]:
    """Add `family` while the block runs (tests: a toy family end to end)."""
    # One module attribute, read as `registry.FAMILIES` everywhere, so a test's family is seen by all.
    global FAMILIES  # noqa: PLW0603
    clash = set(family.protocols) & set(protocols())
    if clash:
        raise ValueError(f"protocol names already taken: {', '.join(sorted(clash))}")
    FAMILIES = (*FAMILIES, family)
    _clear()
    try:
        yield family
    finally:
        FAMILIES = tuple(f for f in FAMILIES if f is not family)
        _clear()


@functools.cache
def _by_protocol() -> Mapping[str, DeviceFamily]:
    return {name: family for family in FAMILIES for name in family.protocols}


def protocols() -> tuple[str, ...]:
    """Every protocol name, sorted (config choices, `--protocol` choices)."""
    return tuple(sorted(_by_protocol()))


def family_for(protocol: str) -> DeviceFamily:
    """The family answering to `protocol`; KeyError when none does."""
    return _by_protocol()[protocol]


def transports() -> tuple[Transport, ...]:
    """Every transport kind once, the fallback (claims any path) last."""
    seen: dict[str, Transport] = {}
    for family in FAMILIES:
        for transport in family.transports:
            seen.setdefault(transport.kind, transport)
    return tuple(sorted(seen.values(), key=lambda t: t.kind == "serial"))


def transport_for(family: DeviceFamily, port: str) -> Transport:
    """The family's transport for a port's spelling; else the one the spelling names."""
    for transport in family.transports:
        if transport.claims(port):
            return transport
    return next(t for t in transports() if t.claims(port))


def make_codec(protocol: str, device_id: str, clock: Clock, settings: CodecSettings | None = None) -> Codec:
    try:
        family = family_for(protocol)
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(protocols())}") from None
    return family.codec(protocol, device_id, clock, settings or CodecSettings())


# Called for every reading on the hot path; the tables never change while the process
# runs. Bounded because some labels come from the sender (any number of distinct ones).
@functools.lru_cache(maxsize=4096)
def lookup(protocol: str, label: str) -> Term | None:
    try:
        family = family_for(protocol)
    except KeyError:
        return None
    return family.terms(label)


@functools.cache
def carried_terms() -> CarriedTerms:
    """Terms for labels that carry their own code, against every family's table."""
    from drivers.hl7.terms import CarriedTerms

    return CarriedTerms(family.table() for family in FAMILIES)


@functools.lru_cache(maxsize=256)  # hot path: every reading with a device time asks
def device_time(protocol: str) -> DeviceTime:
    """How a protocol's device times are judged; LIVE for an unknown protocol."""
    family = _by_protocol().get(protocol)
    return DeviceTime.LIVE if family is None else family.device_time.get(protocol, DeviceTime.LIVE)


@functools.cache
def flag_classes() -> tuple[frozenset[str], frozenset[str]]:
    """(invalid, questionable) flags of every family: a flag means one thing everywhere."""
    invalid = frozenset().union(*(f.invalid_flags for f in FAMILIES))
    questionable = frozenset().union(*(f.questionable_flags for f in FAMILIES))
    return invalid, questionable


def tls_server_context(ca_path: str, cert_path: str, key_path: str) -> object:
    """A listener's TLS 1.3 server context, loaded as the listener will (start-up checks)."""
    from drivers.hl7.listener import server_context

    return server_context(ca_path, cert_path, key_path)


def census_listener(
    device_id: str,
    port: str,
    *,
    tls: tuple[str, str, str] | None,
    on_event: Callable[[Any], str],
    emit: Callable[[DeviceEvent], None],
    clock: Clock,
) -> Link:
    """The hospital's census feed (ADT^A01/A02/A03/A08/A11/A13 over MLLP) on `port`:
    each event goes to `on_event`, which returns why it is refused ("" = taken).
    The appliance asks here, as for a device family, and never names the protocol."""
    from drivers.hl7.adt import adt_listener

    return adt_listener(device_id, port, tls=tls, on_adt=on_event, emit=emit, clock=clock)


def default_radio() -> object:
    """The system's radio backend (BlueZ through bleak), for radio-transport links."""
    from drivers.ble.link import BleBackend

    return BleBackend()


def term_tables() -> dict[str, Mapping[str, Term]]:
    """family name -> its label table, in registry order (families with a table only)."""
    return {family.name: table for family in FAMILIES if (table := family.table())}
