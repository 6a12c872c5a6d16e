"""Operator control of local alarms over a Unix socket (mode 0660).

One JSON object per line in, one per line out:
  {"cmd": "list"} | {"cmd": "ack", "bed": "ICU-1", "rule": "spo2-low"} |
  {"cmd": "pause", "bed": "ICU-1"} | {"cmd": "audit"} | {"cmd": "stats"} | {"cmd": "view"}
`ack` and `pause` take an optional "badge" (a badge scan string) and are recorded
in the audit trail with the operator: the peer's uid (SO_PEERCRED), its user name,
the badge.
`stats` answers the gateway's counters (appliance/stats.py), from memory only.
Further commands come from `handlers` (e.g. {"cmd": "release", "device": "mon-3"},
appliance/clinical/release.py); they get the peer's uid (SO_PEERCRED) for the
operator, and a refusal of theirs is one error line.
Every request gets exactly one reply line: one that is too long, too deeply
nested, not UTF-8, not JSON, not an object, names an unknown command, or does not
arrive within the timeout gets {"ok": false, "error": …} and the connection ends.
Access control is the socket's group (the clinical-engineering group on the box).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from appliance.clinical.operator import badge_problem, operator_fields, peer_uid
from appliance.core.errors import BedsideError
from appliance.core.servers import close_server, serve_until_cancelled

if TYPE_CHECKING:  # the CLI's client side (`request`) must not load the rule engine
    from appliance.alarms import AlarmCircuit

__all__ = ["ControlError", "ControlServer", "path_kind", "request", "socket_path_problem"]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 4096
# Requests are flat objects. The bound is checked before json.loads, whose
# recursion would otherwise turn "[" * 2000 into a RecursionError and no reply.
MAX_DEPTH: Final = 8
REQUEST_TIMEOUT_S: Final = 5.0
SOCKET_MODE: Final = 0o660
# Connections served at once. Each holds a file descriptor; without a bound, idle
# clients reconnecting as the timeout closes them exhaust the process's descriptors
# (the store, serial ports and sinks then fail). Past the bound the connection that
# has waited longest for its request line is closed to make room.
MAX_CLIENTS: Final = 32
_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")


class ControlError(BedsideError):
    """The control socket cannot be reached or answered with an error."""


def path_kind(mode: int) -> str:
    """'a directory', 'a socket', … for an st_mode, for one-line messages."""
    for test, name in (
        (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file"),
        (stat.S_ISLNK, "a symbolic link"),
    ):  # fmt: skip
        if test(mode):
            return name
    return "a special file"


def socket_path_problem(path: Path) -> str:
    """'' when `path` is free or a stale socket nobody listens on (ours from a previous
    run, safe to replace); otherwise why it must not be touched. Blocking (a connect)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"{path}: cannot inspect: {exc.strerror}"
    if not stat.S_ISSOCK(mode):
        # Never delete what is not a socket: it may be someone's data.
        return f"{path} is {path_kind(mode)}, not a socket; refusing to replace it"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            return ""
        except OSError as exc:
            return f"{path}: cannot probe the socket: {exc.strerror or exc}"
    return f"{path}: another process is listening on this socket (is a gateway already running?)"


def _too_deep(data: bytes) -> bool:
    # Nesting outside strings. For any prefix json.loads accepts, its recursion depth
    # is at most this count, so the parser never goes deeper than MAX_DEPTH.
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in _CLOSE:
            depth -= 1
    return False


def _encode(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply).encode() + b"\n"
    except (TypeError, ValueError):  # a reply we cannot serialise is our bug; still answer
        log.exception("control reply not serialisable")
        return b'{"ok": false, "error": "internal error (see the gateway log)"}\n'


class ControlServer:
    def __init__(
        self,
        circuit: AlarmCircuit,
        path: str | Path,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
        max_clients: int = MAX_CLIENTS,
        stats: Callable[[], dict[str, Any]] | None = None,
        audit: Callable[[str, Mapping[str, object]], None] | None = None,
        handlers: Mapping[str, Handler] | None = None,
        view: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.circuit = circuit
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.max_clients = max_clients
        self.evicted = 0
        # Clients still waiting for their request line, oldest first (dicts keep order).
        self._waiting: dict[asyncio.StreamWriter, None] = {}
        self.stats = stats
        self.audit = audit
        # Further commands (request, peer uid) -> reply, e.g. `release` (appliance/clinical/release.py).
        self.handlers = dict(handlers or {})
        self.view = view

    def reply_for(self, line: bytes, uid: int | None = None) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """The reply to one request line from the peer `uid`; never raises (a handler's
        reply is awaited by the caller, see `_settled`)."""
        line = line.removesuffix(b"\n")  # as readline() under the stream's limit counts it
        if len(line) > MAX_REQUEST_BYTES:
            return {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
        if _too_deep(line):
            return {"ok": False, "error": f"request nested deeper than {MAX_DEPTH} levels"}
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return {"ok": False, "error": "request is not UTF-8"}
        try:
            req = json.loads(text)
        except (ValueError, RecursionError):
            return {"ok": False, "error": "request is not JSON"}
        try:
            if isinstance(req, dict) and isinstance(req.get("cmd"), str) and req["cmd"] in self.handlers:
                return self.handlers[req["cmd"]](req, uid)
            return self.handle(req, uid)
        except Exception:  # a reply is owed even for our own bug; the log has the details
            log.exception("control request %.200r failed", text)
            return {"ok": False, "error": "internal error (see the gateway log)"}

    def handle(self, req: Any, uid: int | None = None) -> dict[str, Any]:
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        cmd = req.get("cmd")
        bed, rule, badge, operator = req.get("bed"), req.get("rule"), req.get("badge"), req.get("operator")
        if not all(v is None or isinstance(v, str) for v in (bed, rule, operator)):
            return {"ok": False, "error": "bed, rule and operator must be strings"}
        if problem := badge_problem(badge):
            return {"ok": False, "error": problem}
        from rules.engine import Ack, Pause  # loaded by the gateway already; kept off the client's imports

        if cmd == "ack":
            self.circuit.command(Ack(bed, rule))
            self._audit("alarm_ack", {"bed": bed, "rule": rule, **operator_fields(uid, badge, operator)})
        elif cmd == "pause":
            self.circuit.command(Pause(bed))
            self._audit("audio_pause", {"bed": bed, **operator_fields(uid, badge, operator)})
        elif cmd == "audit":
            return {"ok": True, "audit": [a.to_json_dict() for a in list(self.circuit.arbiter.audit)[-100:]]}
        elif cmd == "stats":
            if self.stats is None:
                return {"ok": False, "error": "no counters on this control socket"}
            return {"ok": True, "stats": self.stats()}
        elif cmd == "view":
            if self.view is None:
                return {"ok": False, "error": "no view on this control socket"}
            return {"ok": True, "view": self.view()}
        elif cmd != "list":
            return {"ok": False, "error": f"unknown cmd {cmd!r}; use list, ack, pause, audit, stats or view"}
        alarms = self.circuit.alarms()
        if bed is not None:
            alarms = [a for a in alarms if a["bed_id"] == bed]
        return {"ok": True, "alarms": alarms}

    def _audit(self, kind: str, fields: Mapping[str, object]) -> None:
        # After the command: the alarm is silenced first, the record follows in the same turn.
        if self.audit is not None:
            self.audit(kind, fields)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._waiting) >= self.max_clients:
            oldest = next(iter(self._waiting))
            self._waiting.pop(oldest)
            self.evicted += 1
            oldest.transport.abort()  # its readline ends; nothing was asked, so nothing is owed
        self._waiting[writer] = None
        try:
            try:
                async with asyncio.timeout(self.timeout_s):
                    line = await reader.readline()
                self._waiting.pop(writer, None)
                reply = await _settled(self.reply_for(line, peer_uid(writer.get_extra_info("socket"))))
            except TimeoutError:
                reply = {"ok": False, "error": f"no complete request line within {self.timeout_s:g} s"}
            except ValueError:  # the stream's limit: the line is longer than MAX_REQUEST_BYTES
                reply = {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
            if writer.is_closing():
                return  # closed to make room (or gone): writing would only raise (uvloop: RuntimeError)
            writer.write(_encode(reply))
            # A client that does not read its reply cannot hold the connection open.
            async with asyncio.timeout(self.timeout_s):
                await writer.drain()
        except (TimeoutError, ConnectionError, RuntimeError):
            pass  # the client went away or stopped reading: nothing left to tell it
        finally:
            self._waiting.pop(writer, None)
            writer.close()

    async def run(self) -> None:
        problem = await asyncio.to_thread(socket_path_problem, self.path)
        if problem:
            raise ControlError(problem)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket nobody listens on (checked just above)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        server = await asyncio.start_unix_server(self._client, self.path, limit=MAX_REQUEST_BYTES)
        os.chmod(self.path, SOCKET_MODE)
        ours = os.stat(self.path)
        try:
            await serve_until_cancelled()
        finally:
            await close_server(server)  # a client mid-request is dropped: the gateway is stopping
            # Remove only the socket we bound, not whatever may have replaced it since.
            with contextlib.suppress(OSError):
                now = os.lstat(self.path)
                if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino):
                    self.path.unlink()


Handler = Callable[[dict[str, Any], int | None], Awaitable[dict[str, Any]]]


async def _settled(reply: dict[str, Any] | Awaitable[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(reply, dict):
        return reply
    try:
        return await reply
    except BedsideError as exc:  # a refusal: one line for the operator
        return {"ok": False, "error": str(exc)}
    except Exception:
        log.exception("control request failed")
        return {"ok": False, "error": "internal error (see the gateway log)"}


def _connect(path: str | Path, timeout_s: float) -> socket.socket:
    """Connect, retrying while the listen queue is full (EAGAIN): a client connecting
    in a loop must not lock the operator out with one failed attempt."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
        except BaseException:
            sock.close()
            raise


def request(path: str | Path, payload: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Blocking client used by the CLI."""
    try:
        with _connect(path, timeout_s) as sock:
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise ControlError(f"{path}: cannot reach the gateway: {exc.strerror or exc}") from exc
    try:
        reply: dict[str, Any] = json.loads(data)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise ControlError(f"{path}: bad reply from the gateway") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: bad reply from the gateway (not a JSON object)")
    if not reply.get("ok"):
        raise ControlError(f"{path}: {reply.get('error', 'request refused')}")
    return reply
