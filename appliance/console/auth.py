"""Who is asking: sessions after a login, client certificates, failed-login limits.

Pure bookkeeping with an injected clock: no sockets, no files (the login check
itself is `Users.check`). A session is a random token in an HttpOnly, Secure,
SameSite=Strict cookie, with its own CSRF token that every state-changing request
must echo in a header; a client certificate's operator gets a session on its
first page load the same way. Bounded: at most MAX_SESSIONS (the oldest goes),
failures remembered per address for LOCKOUT_WINDOW_S.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["LOCKOUT_FAILURES", "Session", "Sessions"]

MAX_SESSIONS: Final = 64
LOCKOUT_FAILURES: Final = 5  # failed logins from one address within the window -> refused for the window
LOCKOUT_WINDOW_S: Final = 60.0
MAX_TRACKED_ADDRESSES: Final = 1024


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user: str
    csrf: str
    expires: float


class Sessions:
    """Thread-safe: the console answers each connection on its own thread."""

    def __init__(self, lifetime_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_s = lifetime_s
        self._now = now
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, user: str) -> Session:
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(24), self._now() + self.lifetime_s)
        with self._lock:
            self._sessions[session.token] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session for a cookie's token; using it extends it (idle timeout)."""
        with self._lock:
            session = self._sessions.get(token or "")
            if session is None:
                return None
            now = self._now()
            if now >= session.expires:
                del self._sessions[session.token]
                return None
            renewed = Session(session.token, session.user, session.csrf, now + self.lifetime_s)
            self._sessions[session.token] = renewed
            self._sessions.move_to_end(session.token)
            return renewed

    def close(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def locked(self, address: str) -> bool:
        with self._lock:
            recent = self._recent(address)
            return recent is not None and len(recent) >= LOCKOUT_FAILURES

    def attempt(self, address: str) -> bool:
        """Count a login attempt as failed until `succeeded`; False (not counted) when the
        address is locked out. Counting first means parallel guesses cannot all pass."""
        with self._lock:
            recent = self._recent(address)
            if recent is None:
                recent = self._failures[address] = deque(maxlen=LOCKOUT_FAILURES)
            if len(recent) >= LOCKOUT_FAILURES:
                return False
            recent.append(self._now())
            self._failures.move_to_end(address)
            while len(self._failures) > MAX_TRACKED_ADDRESSES:
                self._failures.popitem(last=False)
            return True

    def failed(self, address: str) -> None:
        self.attempt(address)

    def succeeded(self, address: str) -> None:
        """The attempt just counted was a good login: it does not count against the address."""
        with self._lock:
            recent = self._failures.get(address)
            if recent:
                recent.pop()

    def _recent(self, address: str) -> deque[float] | None:
        recent = self._failures.get(address)
        if recent is None:
            return None
        while recent and self._now() - recent[0] > LOCKOUT_WINDOW_S:
            recent.popleft()
        return recent
