"""`bedside console`: the local web console over HTTPS (TLS 1.3 only).

A separate process from the gateway: it reads the gateway through the control
socket (`view`, `ack`, `pause`) and pairs devices through appliance/pairing.py
(the CLI's checks), so a slow browser or a flood of requests never reaches the
event loop that carries the alarm path. Bound to one management address (never a
wildcard), optionally also to its interface; at most `max_clients` connections at
once (more are closed unanswered); requests over 4 KiB or slower than 10 s are cut.

Operators are a local login (scrypt, appliance/console/users.py) or a client
certificate from `client_ca_path`; state changes need the session's CSRF token in
a header. Every operator action is passed to the gateway with the operator's name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import ssl
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs

from appliance.config import Config, load_config
from appliance.console.auth import Session, Sessions
from appliance.console.users import Users
from appliance.control import ControlError, request
from appliance.core.errors import EXIT_OK, BedsideConfigError, BedsideInputError
from appliance.core.keyfiles import check_key_file
from appliance.pairing import PairingRefused, pair_device
from appliance.registry import Registry, RegistryError

__all__ = ["ConsoleServer", "cmd_console", "make_server"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 4096
REQUEST_TIMEOUT_S: Final = 10.0
COOKIE: Final = "bedside_session"
HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=31536000",
}
STATIC: Final = {"/app.js": "application/javascript", "/app.css": "text/css"}


class ConsoleError(BedsideConfigError):
    """The console cannot start (TLS material, address): one line, exit 2."""


def _page(name: str) -> str:
    return resources.files("appliance.console").joinpath("static", name).read_text(encoding="utf-8")


def tls_context(config: Config) -> ssl.SSLContext:
    c = config.console
    check_key_file(c.key_path, "console.key_path")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(c.cert_path, c.key_path)
        if c.client_ca_path:
            ctx.load_verify_locations(c.client_ca_path)
            ctx.verify_mode = ssl.CERT_OPTIONAL  # a certificate logs in; without one, the login page
    except (OSError, ssl.SSLError) as exc:
        raise ConsoleError(f"console: cannot load TLS material: {' '.join(str(exc).split())}") from exc
    return ctx


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: Config, context: ssl.SSLContext) -> None:
        c = config.console
        self.address_family = socket.AF_INET6 if ":" in c.listen_host else socket.AF_INET
        self.config = config
        self.context = context
        self.sessions = Sessions(c.session_s)
        self.users = Users(c.users_path) if c.users_path else None
        self.max_clients = c.max_clients
        # Open connections, oldest first: at the limit the oldest is closed to make room
        # (a slow or idle client cannot lock operators out), as the control socket does.
        self._open: dict[socket.socket, None] = {}
        self._lock = threading.Lock()
        self.evicted = 0
        super().__init__((c.listen_host, c.port), Handler, bind_and_activate=False)
        if c.interface:
            try:
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, c.interface.encode())
            except OSError as exc:
                self.socket.close()
                raise ConsoleError(f"console.interface: cannot bind to {c.interface!r}: {exc.strerror}") from exc
        try:
            self.server_bind()
            self.server_activate()
        except OSError as exc:
            self.socket.close()
            where = f"{c.listen_host}:{c.port}"
            raise ConsoleError(f"console.listen_host: cannot listen on {where}: {exc.strerror}") from exc

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._open) >= self.max_clients:
                oldest = next(iter(self._open))
                self._open.pop(oldest)
                self.evicted += 1
                _cut(oldest)
            self._open[request] = None
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # One deadline for the whole connection (handshake, headers, body, reply), not per read.
        deadline = threading.Timer(REQUEST_TIMEOUT_S, _cut, (request,))
        deadline.start()
        try:
            request.settimeout(REQUEST_TIMEOUT_S)
            tls = self.context.wrap_socket(request, server_side=True)  # the handshake, in this thread
        except (OSError, ssl.SSLError):
            self.shutdown_request(request)
        else:
            super().process_request_thread(tls, client_address)
        finally:
            deadline.cancel()
            with self._lock:
                self._open.pop(request, None)


def _cut(sock: socket.socket) -> None:
    """End a connection from another thread: its reads and writes fail at once."""
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    server: ConsoleServer
    server_version = "bedside-console"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    # -- responses ---------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {**HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", extra)

    def _redirect(self, where: str, cookie: str | None = None) -> None:
        extra = {"Location": where}
        if cookie is not None:
            extra["Set-Cookie"] = cookie
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", extra)

    # -- who is asking -------------------------------------------------------------
    def _token(self) -> str | None:
        morsel = SimpleCookie(self.headers.get("Cookie", "")).get(COOKIE)
        return morsel.value if morsel else None

    def _cert_user(self) -> str | None:
        try:
            cert: Any = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        except ValueError:  # no handshake (yet): no certificate
            return None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return f"cert:{value}"
        return None

    def _session(self) -> tuple[Session | None, str | None]:
        """The session, and a Set-Cookie when a client certificate just opened one."""
        session = self.server.sessions.get(self._token())
        if session is not None:
            return session, None
        user = self._cert_user()
        if user is None:
            return None, None
        session = self.server.sessions.open(user)
        return session, _cookie(session.token)

    def _body(self) -> bytes | None:
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not raw.isdigit() or len(raw) > 9:  # not a plain decimal (-1 would read to EOF)
            self._json(HTTPStatus.BAD_REQUEST, {"error": "Content-Length must be a decimal byte count"})
            return None
        length = int(raw)
        if length > MAX_BODY_BYTES:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"request over {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length)

    # -- routes ------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            self._send(HTTPStatus.OK, _page(path[1:]).encode(), STATIC[path])
            return
        session, cookie = self._session()
        if path == "/":
            if session is None:
                failed = "failed" in self.path
                page = _page("login.html").replace("{{message}}", "Wrong name or password." if failed else "")
                self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
                return
            page = _page("index.html").replace("{{csrf}}", session.csrf).replace("{{user}}", _html(session.user))
            extra = {"Set-Cookie": cookie} if cookie else None
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", extra)
        elif path == "/api/view":
            if session is None:
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "log in first"})
                return
            self._gateway({"cmd": "view"}, lambda reply: {"view": reply["view"]})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such page"})

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        if self.path == "/login":
            self._login(body)
            return
        session, _ = self._session()
        if session is None:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "log in first"})
            return
        if self.path == "/logout":
            self.server.sessions.close(session.token)
            self._redirect("/", f"{COOKIE}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict")
            return
        if self.headers.get("X-Bedside-CSRF") != session.csrf:
            self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong CSRF token (reload the page)"})
            return
        try:
            args = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            args = None
        if not isinstance(args, dict) or not all(isinstance(v, str | None) for v in args.values()):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "the body must be a JSON object of strings"})
            return
        self._action(session, args)

    def _action(self, session: Session, args: dict[str, str | None]) -> None:
        operator = {"operator": session.user, "badge": args.get("badge")}
        if self.path == "/api/ack":
            cmd = {"cmd": "ack", "bed": args.get("bed"), "rule": args.get("rule"), **operator}
            self._gateway(cmd, lambda _: {"done": "acknowledged"})
        elif self.path == "/api/pause":
            self._gateway({"cmd": "pause", "bed": args.get("bed"), **operator}, lambda _: {"done": "audio paused"})
        elif self.path == "/api/pair":
            self._pair(session, args)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such action"})

    def _pair(self, session: Session, args: dict[str, str | None]) -> None:
        device, bed, patient = args.get("device_id") or "", args.get("bed") or "", args.get("patient") or None
        config = self.server.config
        try:
            p = pair_device(
                Registry(config.gateway.registry_path), device, bed, patient, [d.id for d in config.devices],
                census_path=config.clinical.census_path, wristband=args.get("wristband") or None, by=session.user,
            )  # fmt: skip
        except (PairingRefused, RegistryError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        log.info("console: %s paired %s to bed %s", session.user, p.device_id, p.bed_id)
        self._json(HTTPStatus.OK, {"done": f"paired {p.device_id} to bed {p.bed_id}, patient {p.patient_id or '-'}"})

    def _gateway(self, payload: dict[str, Any], shape: Any) -> None:
        try:
            reply = request(self.server.config.alarms.control_socket, payload)
        except ControlError as exc:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
            return
        self._json(HTTPStatus.OK, shape(reply))

    def _login(self, body: bytes) -> None:
        address = self.client_address[0]
        users = self.server.users
        if users is None:
            self._json(HTTPStatus.FORBIDDEN, {"error": "local logins are off: use a client certificate"})
            return
        # Counted before the (slow) hash: parallel guesses cannot slip past the limit.
        if not self.server.sessions.attempt(address):
            self._json(HTTPStatus.TOO_MANY_REQUESTS, {"error": "too many failed logins: wait a minute"})
            return
        form = parse_qs(body.decode("utf-8", errors="replace"))
        name, password = form.get("user", [""])[0], form.get("password", [""])[0]
        try:
            ok = users.check(name, password)
        except BedsideInputError as exc:
            log.error("console: %s", exc)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "the login file cannot be read (see the log)"})
            return
        if not ok:
            log.warning("console: failed login for %r from %s", name[:64], address)
            self._redirect("/?failed")
            return
        self.server.sessions.succeeded(address)
        session = self.server.sessions.open(name)
        log.info("console: %s logged in from %s", name, address)
        self._redirect("/", _cookie(session.token))


def _cookie(token: str) -> str:
    return f"{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def make_server(config: Config) -> ConsoleServer:
    if not config.console.listen_host:
        raise ConsoleError("console.listen_host: not set, so there is no console to serve")
    return ConsoleServer(config, tls_context(config))


def cmd_console(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not config.console.listen_host:  # the shipped unit runs on every box; off is not an error
        print(f"console: off ({args.config}: console.listen_host is not set)")
        return EXIT_OK
    server = make_server(config)
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"console: https://{host}:{port}/ (TLS 1.3; Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK
