"""Stored-record catch-up decisions, without I/O: what to ask for, what counts, what to keep.

A device with a record store (the Glucose profile) numbers its records. The link
persists the number of the last record it has delivered (the resume cursor) and,
on every connection and whenever a live record reveals a gap, asks the device
(RACP) for every record after it. This unit decides, from the sequence numbers
seen and the RACP answer, and nothing else:

* which request to send (`request`): all records, or those after the cursor;
* whether an arriving record is a duplicate (`offer`) and, once delivered, whether
  it moves the cursor, reveals a gap, or waits for the catch-up's end (`delivered`);
* what the cursor becomes when a catch-up ends (`finish`) or is stopped (`stop`).

The one invariant: the cursor never passes a record that was neither delivered
nor declared absent by the device (a completed report). A cursor past a gap
would make the next request skip those records for good.

The link (drivers/ble/link.py) does the radio, timing and disk I/O around it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from drivers.ble.glucose import NO_RECORDS, SUCCESS, RacpOp, decode_racp, racp_report_after, racp_report_all
from drivers.ble.numbers import BleDecodeError

__all__ = ["CatchUp", "CatchUpEnd", "Offer", "Settled", "racp_outcome"]


class Offer(enum.Enum):
    """What to do with an arriving stored-profile record."""

    DELIVER = "deliver"  # decode and deliver it, then report it with `delivered`
    SKIP = "skip"  # delivered before (at or below the cursor, or on this connection)
    DROP = "drop"  # the link is stopping: not delivered, so the next start asks for it again


class Settled(enum.Enum):
    """What a delivered record changed."""

    HELD = "held"  # arrived during a catch-up: the cursor moves when it ends
    PERSIST = "persist"  # the next record in line: the cursor moved, write it
    GAP = "gap"  # live, but records before it never arrived: fetch them


@dataclass(frozen=True, slots=True)
class CatchUpEnd:
    cursor: int | None  # the resume cursor now (also `CatchUp.cursor`)
    complete: bool  # the device reported everything it has after the old cursor
    abort: bool  # no answer in time: tell the device to stop sending
    refusal: str  # the device's reason when it answered with an error


def racp_outcome(data: bytes) -> str | None:
    """A RACP indication as the end of a procedure: "" = done (records sent or none
    to send), text = refused (or undecodable), None = not an end (a count answer)."""
    try:
        response = decode_racp(data)
    except BleDecodeError as exc:
        return str(exc)  # an answer we cannot read ends the wait: treated as a refusal
    if response.op != RacpOp.RESPONSE:
        return None
    return "" if response.code in (SUCCESS, NO_RECORDS) else response.text


@dataclass(slots=True)
class CatchUp:
    """The catch-up state of one device; `cursor` is what the link persists."""

    cursor: int | None = None  # last record delivered with nothing missing before it
    duplicates: int = 0  # records offered again and skipped
    catching_up: bool = False  # records arriving now are stored ones (held, not live)
    floor: int | None = None  # the cursor when the current request was made
    seen: set[int] = field(default_factory=set)  # delivered on this connection
    gap: bool = False  # a live record skipped over some: a catch-up should fetch them
    stopped: bool = False  # `stop` gave the cursor to persist: it is the last word

    def connected(self) -> None:
        """A new connection: records that arrive before the catch-up's answer (a meter
        sending its newest at once) must not move the request's start past a gap."""
        self.floor = self.cursor
        self.seen = set()
        self.gap = False
        self.catching_up = True
        self.stopped = False

    def disconnected(self) -> None:
        self.catching_up = False

    def request(self) -> bytes:
        """The RACP request for every record after the cursor; starts a catch-up."""
        self.catching_up = True
        self.gap = False  # this request covers it
        return racp_report_all() if self.floor is None else racp_report_after(self.floor)

    def offer(self, seq: int) -> Offer:
        if self.stopped:
            # A notification can still arrive while the stopping link disconnects; were
            # it delivered, the cursor persisted on the way out would not cover it and
            # the next start would deliver it again.
            return Offer.DROP
        if (self.floor is not None and seq <= self.floor) or seq in self.seen:
            self.duplicates += 1
            return Offer.SKIP
        return Offer.DELIVER

    def delivered(self, seq: int) -> Settled:
        """Record `seq` decoded and delivered (a bad frame is not: it will be asked again)."""
        self.seen.add(seq)
        if self.catching_up:
            return Settled.HELD
        if seq > (self.cursor or 0) + 1:
            self.gap = True  # records in between were never sent: ask for them
            return Settled.GAP
        self.cursor = seq
        return Settled.PERSIST

    def contiguous(self) -> int | None:
        """The last sequence number below which nothing is missing on this connection."""
        last = self.floor or 0
        while last + 1 in self.seen:
            last += 1
        return last if (self.floor is not None or last) else None

    def finish(self, *, answered: bool, refusal: str = "") -> CatchUpEnd:
        """The catch-up ended: `answered` = the device ended the procedure in time."""
        complete = answered and not refusal
        if complete:
            # Every record after the cursor was sent: numbers in between were deleted.
            self.cursor = max(self.seen | {self.floor or 0}) or None
        else:
            # Stay below the first record not received, so the next request starts
            # there (a live record may be far ahead).
            self.cursor = self.contiguous()
        self.catching_up = False
        self.floor = self.cursor
        return CatchUpEnd(self.cursor, complete, abort=not answered, refusal=refusal if answered else "")

    def stop(self) -> int | None:
        """Stopped (gateway shutdown): keep what arrived without a hole mid catch-up;
        nothing offered after this is delivered (`Offer.DROP`) until a new connection."""
        self.stopped = True
        if self.catching_up:
            safe = self.contiguous()
            if safe is not None and safe > (self.cursor or 0):
                self.cursor = safe
        return self.cursor
