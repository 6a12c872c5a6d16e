"""Who may hold one of the HL7 listener's connection slots: pure decision cores.

`admit` decides for a new connection against the open ones: accept it, accept it
after evicting a connection, or refuse it. Limits are per listener and per peer
address. An idle connection (no message under way) is evicted first, the
longest-idle first. A message in transit is never cut off to make room, but a
message that has been open for `stalled_s` is not in transit: a real sender
writes a whole PCD message in milliseconds, while a slow-loris sender trickles
one byte at a time to hold its slot. Such stalled connections are evicted next,
the longest-open message first, so connections stuck mid-message cannot lock real
senders out until their message deadline. Last, a connection that sends more
refused messages than accepted ones (junk that completes a "message" just often
enough never to stall) may be evicted even mid-message: it is not a sender we
can use, and it must not hold a slot a real one needs.
The per-peer limit is checked first, so one host filling its share evicts its
own stale connections (a sender that reconnected after a crash), not others'.

`deadline` says when a connection must have shown progress: its first byte
within `first_byte_s` of opening, a message complete within `message_s` of its
first byte, and some byte within `idle_s` of the last.

`RefusalReporter` rate-limits the "connection_refused" event: at most one per
`interval_s`, carrying how many refusals and evictions it stands for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "STALLED_MESSAGE_S",
    "Admission",
    "ConnView",
    "Deadline",
    "RefusalReporter",
    "Timeouts",
    "admit",
    "deadline",
    "stalled",
]

Action = Literal["accept", "evict", "refuse"]


@dataclass(frozen=True, slots=True)
class ConnView:
    conn_id: int
    peer: str
    opened: float  # monotonic seconds
    last_activity: float
    in_message: bool
    message_since: float | None = None  # when the message under way began (monotonic)
    misbehaving: bool = False  # more of its messages refused than accepted


@dataclass(frozen=True, slots=True)
class Admission:
    action: Action
    victim: ConnView | None = None
    reason: str = ""


# A whole message takes milliseconds to write; one open this long is being trickled.
STALLED_MESSAGE_S: Final = 2.0


def stalled(c: ConnView, now: float | None, stalled_s: float) -> bool:
    return now is not None and c.message_since is not None and now - c.message_since >= stalled_s


def _victim(conns: Sequence[ConnView], now: float | None, stalled_s: float) -> ConnView | None:
    idle = [c for c in conns if not c.in_message]
    if idle:
        return min(idle, key=lambda c: (c.last_activity, c.opened, c.conn_id))
    slow = [c for c in conns if stalled(c, now, stalled_s)]
    if slow:
        return min(slow, key=lambda c: (c.message_since or 0.0, c.conn_id))
    junk = [c for c in conns if c.misbehaving]
    return min(junk, key=lambda c: (c.last_activity, c.conn_id)) if junk else None


def admit(
    conns: Sequence[ConnView],
    peer: str,
    max_total: int,
    max_per_peer: int,
    now: float | None = None,
    *,
    stalled_s: float = STALLED_MESSAGE_S,
) -> Admission:
    same = [c for c in conns if c.peer == peer]
    if len(same) >= max_per_peer:
        victim = _victim(same, now, stalled_s)
        if victim is None:
            return Admission("refuse", None, f"{peer} already has {len(same)} connections, all mid-message")
        return Admission("evict", victim, f"{peer} reached {max_per_peer} connections: its {_which(victim)} evicted")
    if len(conns) >= max_total:
        victim = _victim(conns, now, stalled_s)
        if victim is None:
            return Admission("refuse", None, f"{len(conns)} connections open, all mid-message")
        return Admission("evict", victim, f"{max_total} connections open: the {_which(victim)} ({victim.peer}) evicted")
    return Admission("accept")


def _which(victim: ConnView) -> str:
    if not victim.in_message:
        return "longest-idle one"
    return (
        "stalled mid-message one" if victim.message_since is not None and not victim.misbehaving else "misbehaving one"
    )


@dataclass(frozen=True, slots=True)
class Timeouts:
    first_byte_s: float = 30.0
    message_s: float = 30.0
    idle_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Deadline:
    at: float
    kind: Literal["first_byte", "message", "idle"]

    @property
    def is_refusal(self) -> bool:
        """Missing the first-byte or message deadline ends the connection as a refusal;
        plain idleness after real traffic is a normal close."""
        return self.kind != "idle"


def deadline(
    t: Timeouts, opened: float, last_activity: float, got_bytes: bool, message_since: float | None
) -> Deadline:
    candidates = [Deadline(last_activity + t.idle_s, "idle")]
    if not got_bytes:
        candidates.append(Deadline(opened + t.first_byte_s, "first_byte"))
    if message_since is not None:
        candidates.append(Deadline(message_since + t.message_s, "message"))
    return min(candidates, key=lambda d: d.at)


DEFAULT_REPORT_INTERVAL_S: Final = 60.0


class RefusalReporter:
    """Counts refusals; `note` says whether to report now, `due` when a held one is."""

    def __init__(self, interval_s: float = DEFAULT_REPORT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.total = 0
        self.pending = 0  # refusals not yet carried by an event
        self.last_detail = ""
        self._last_report: float | None = None

    def note(self, now: float, detail: str) -> bool:
        self.total += 1
        self.pending += 1
        self.last_detail = detail
        return self.ready(now)

    def ready(self, now: float) -> bool:
        return self.pending > 0 and (self._last_report is None or now - self._last_report >= self.interval_s)

    def due(self) -> float | None:
        """When a held refusal may be reported (None: nothing held or reportable now)."""
        if self.pending == 0 or self._last_report is None:
            return None
        return self._last_report + self.interval_s

    def take(self, now: float) -> tuple[int, str]:
        """(total so far, detail) for the event; resets the pending count."""
        pending, self.pending = self.pending, 0
        self._last_report = now
        more = f" ({pending} refusals/evictions since the last report)" if pending > 1 else ""
        return self.total, self.last_detail + more
