"""Which HL7 messages a listener has already used: a sender's resend is used once.

Only digests are kept (a hostile 60 KB MSH-10 costs 16 bytes), bounded, oldest
first. The message digest is also the readings' `origin` (drivers/hl7/codec.py),
so a resend that gets past this memory (older than its bound, or after a restart)
still yields the same observation ids, which consumers deduplicate on.
Pure; no I/O.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Final

from drivers.hl7.meaning import Originals

__all__ = ["MAX_SEEN_IDS", "Seen", "message_keys"]

MAX_SEEN_IDS: Final = 1024  # control ids remembered to spot a sender's resend of a message we took


def message_keys(sender: str, control_id: str, body: bytes) -> tuple[bytes, bytes]:
    """(control id key, message key): digests of sender + MSH-10, and of those plus
    the content after MSH with segment breaks normalised (CR, LF, CR LF)."""
    ident = hashlib.blake2b(f"{sender}\x00{control_id}".encode(), digest_size=16)
    id_key = ident.digest()
    ident.update(b"\x00" + body.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip())
    return id_key, ident.digest()


class Seen:
    """Messages already used, by sender (MSH-3, MSH-4), control id (MSH-10) and content.

    Shared by every connection of one listener: a sender whose ACK was lost may
    resend on a new connection, and its resend must be used once. A control id
    reused for different content (a sender with a fixed or wrapping counter) is a
    new message, never silently dropped; content seen before under that id (A, B,
    A) is a resend. Only digests are kept (a hostile 60 KB MSH-10 costs 16 bytes),
    bounded: the oldest go first. Segment breaks are normalised (CR, LF, CR LF).
    """

    def __init__(self, max_entries: int = MAX_SEEN_IDS) -> None:
        self._messages: OrderedDict[bytes, None] = OrderedDict()
        self._ids: OrderedDict[bytes, None] = OrderedDict()
        self._max = max_entries
        self.resends = 0
        self.reused_ids = 0
        self.originals = Originals()  # shared with the messages: a correction may come on a new connection

    def first_time(self, sender: str, control_id: str, body: bytes) -> bool:
        return self.first_time_keys(*message_keys(sender, control_id, body))

    def first_time_keys(self, id_key: bytes, message_key: bytes) -> bool:
        if message_key in self._messages:
            self._messages.move_to_end(message_key)
            self.resends += 1
            return False
        if id_key in self._ids:
            self.reused_ids += 1
        for table, key in ((self._messages, message_key), (self._ids, id_key)):
            table[key] = None
            table.move_to_end(key)
            if len(table) > self._max:
                table.popitem(last=False)
        return True
