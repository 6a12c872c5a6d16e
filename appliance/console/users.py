"""Local operator logins for the web console: name -> scrypt hash, in a 0600 JSON file.

`bedside console-user --config C NAME` adds or changes one (password from the
terminal, or stdin with --password-stdin). Passwords are never stored or logged;
a verification costs one scrypt (n=2**14, r=8, p=1: ~50 ms here) so guessing is
slow, and the server also limits failed logins per address.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Final

from appliance.config import load_config
from appliance.core.errors import EXIT_OK, BedsideInputError

__all__ = ["UserError", "Users", "cmd_console_user"]

SCRYPT: Final = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
MIN_PASSWORD_CHARS: Final = 10
FILE_MODE: Final = 0o600


class UserError(BedsideInputError):
    """A login file that cannot be read or a password refused: one line, exit 2."""


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, **SCRYPT)


class Users:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path}: not a console user file ({exc})") from exc
        if not isinstance(data, dict):
            raise UserError(f"{self.path}: not a console user file")
        return data

    def set(self, name: str, password: str) -> None:
        if not name or not name.isprintable() or " " in name or len(name) > 64:
            raise UserError(f"user name {name!r}: 1-64 printable characters, no spaces")
        if len(password) < MIN_PASSWORD_CHARS:
            raise UserError(f"password: at least {MIN_PASSWORD_CHARS} characters")
        users = self._load()
        salt = secrets.token_bytes(16)
        users[name] = {"salt": salt.hex(), "scrypt": _hash(password, salt).hex()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(users, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def check(self, name: str, password: str) -> bool:
        """True for a known user with this password; the same work either way."""
        entry = self._load().get(name)
        salt = bytes.fromhex(entry["salt"]) if entry else b"\0" * 16
        got = _hash(password, salt)
        want = bytes.fromhex(entry["scrypt"]) if entry else secrets.token_bytes(32)
        return hmac.compare_digest(got, want) and entry is not None


def cmd_console_user(args: argparse.Namespace) -> int:
    path = load_config(args.config).console.users_path
    if not path:
        raise UserError(f"{args.config}: console.users_path: not set")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the two passwords differ")
    Users(path).set(args.name, password)
    print(f"{args.name}: login saved in {path}")
    return EXIT_OK
