"""Which HL7 messages a listener has already used: a sender's resend is used once.

Only digests are kept (a hostile 60 KB MSH-10 costs 16 bytes), bounded, oldest
first. The message digest is also the readings' `origin` (drivers/hl7/codec.py),
so a resend that gets past this memory (older than its bound, or after a restart)
still yields the same observation ids, which consumers deduplicate on.

`to_bytes` / `from_bytes` are the memory's persisted form (drivers/hl7/seen_file.py
writes it off the alarm path), so the window survives a restart. Pure; no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Final

from drivers.hl7.meaning import Originals

__all__ = ["MAX_SEEN_IDS", "Seen", "message_keys"]

MAX_SEEN_IDS: Final = 1024  # control ids remembered to spot a sender's resend of a message we took
_FORMAT: Final = 1  # version of the persisted form
_DIGEST_HEX: Final = 32


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
        self.changes = 0  # messages taken since start: the persisting task saves when this moves

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
        self.changes += 1
        return True

    def to_bytes(self) -> bytes:
        """The digests, oldest first (a few tens of KB at the bound)."""
        tables = {"messages": [k.hex() for k in self._messages], "ids": [k.hex() for k in self._ids]}
        return json.dumps({"v": _FORMAT, **tables}, separators=(",", ":")).encode()

    def load(self, data: bytes) -> None:
        """Take a persisted memory (ValueError if it is not one); the newest entries
        up to this memory's bound are kept, after what it holds already."""
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("v") != _FORMAT:
            raise ValueError("not a persisted HL7 message memory")
        for name, table in (("messages", self._messages), ("ids", self._ids)):
            keys = raw.get(name)
            if not isinstance(keys, list) or not all(isinstance(k, str) and len(k) == _DIGEST_HEX for k in keys):
                raise ValueError(f"{name}: not a list of digests")
            loaded = OrderedDict((bytes.fromhex(k), None) for k in keys[-self._max :])
            loaded.update(table)  # what this run took already is newer
            table.clear()
            table.update(list(loaded.items())[-self._max :])
