"""Update the co-processor's firmware over its MicroPython raw REPL (what mpremote does).

Blocking; run in a thread at start, never on the alarm path. The running firmware
hands its UART to the REPL on a framed `REPL` command that follows a `VER` in the same
session, and never while it sounds the failure pattern (docs/coproc.md). That is
integrity, not authentication: a recorded HELLO, VER, REPL sequence replayed still
gets the REPL, which the firmware bounds by resetting itself after REPL_TIMEOUT_MS;
`LEAVE_REPL` brings such a board back sooner. Then: Ctrl-A (raw REPL), each file
written in chunks by `open(..., 'wb').write()`, Ctrl-B, Ctrl-D (soft reset: the new
main.py runs). Raw REPL framing: code, Ctrl-D; the board answers `OK`, stdout, Ctrl-D,
stderr, Ctrl-D, `>`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final, Protocol

from rules.outputs.base import OutputError

__all__ = ["LEAVE_REPL", "FlashError", "Port", "exec_raw", "firmware_files", "flash", "read_until", "shipped_version"]

RAW_PROMPT: Final = b"raw REPL; CTRL-B to exit\r\n>"
CHUNK: Final = 128  # bytes of file data per exec: well inside the board's input buffer
MAX_FILE: Final = 64 * 1024  # the firmware is a few KiB; anything bigger is not ours
# A board left in its REPL (an update cut short): Enter, Ctrl-C twice (stop any code,
# clear the line, in the friendly and the raw REPL alike), Ctrl-D on the empty line
# (soft reset: main.py runs). The newline ends the line for a running firmware, which
# ignores it as one corrupt frame.
LEAVE_REPL: Final = b"\r\x03\x03\x04\n"


class FlashError(OutputError):
    """The raw REPL did not answer as expected, or the board raised."""


class Port(Protocol):
    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def reset_input_buffer(self) -> None: ...


def read_until(port: Port, marker: bytes, timeout_s: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout_s
    while not out.endswith(marker):
        if time.monotonic() > deadline:
            raise FlashError(f"co-processor REPL: no {marker!r} within {timeout_s} s (got {out[-60:]!r})")
        out += port.read(1)
    return out[: -len(marker)]


def exec_raw(port: Port, code: str, timeout_s: float = 5.0) -> bytes:
    """Run `code` in the raw REPL; its stdout, or FlashError with the board's traceback."""
    data = code.encode()
    for i in range(0, len(data), 256):
        port.write(data[i : i + 256])
    port.write(b"\x04")
    if read_until(port, b"OK", timeout_s) != b"":
        raise FlashError("co-processor raw REPL did not take the code")
    out = read_until(port, b"\x04", timeout_s)
    err = read_until(port, b"\x04", timeout_s)
    read_until(port, b">", timeout_s)
    if err:
        raise FlashError(f"co-processor raised: {err.decode(errors='replace').strip().splitlines()[-1]}")
    return out


def firmware_files(folder: Path) -> dict[str, bytes]:
    files = {f.name: f.read_bytes() for f in sorted(folder.glob("*.py"))}
    if "main.py" not in files:
        raise FlashError(f"{folder}: no main.py: not a firmware folder")
    for name, data in files.items():
        if len(data) > MAX_FILE:
            raise FlashError(f"{folder / name}: over {MAX_FILE} bytes")
    return files


def shipped_version(folder: Path) -> str:
    """FW_VERSION of the firmware in `folder` (read as text, never imported)."""
    for line in (folder / "bsc_proto.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("FW_VERSION = "):
            return line.split("=", 1)[1].split("#")[0].strip().strip("\"'")
    raise FlashError(f"{folder}/bsc_proto.py: no FW_VERSION")


def flash(port: Port, files: dict[str, bytes], timeout_s: float = 5.0) -> None:
    """Write `files` through a REPL already on the line, then soft-reset the board."""
    port.write(b"\r\x03\x03")
    time.sleep(0.1)
    port.reset_input_buffer()
    port.write(b"\r\x01")
    read_until(port, RAW_PROMPT, timeout_s)
    for name, data in files.items():
        exec_raw(port, f"f=open({name + '.new'!r},'wb')", timeout_s)
        for i in range(0, len(data), CHUNK):
            exec_raw(port, f"f.write({data[i : i + CHUNK]!r})", timeout_s)
        exec_raw(port, "f.close()", timeout_s)
    # Every file written whole first, then renamed: a cut mid-way leaves the old set.
    renames = "".join(f"os.rename({n + '.new'!r},{n!r})\n" for n in files)
    exec_raw(port, "import os\n" + renames, timeout_s)
    port.write(b"\x02")  # leave the raw REPL
    time.sleep(0.05)
    port.write(b"\x04")  # soft reset in the friendly REPL: main.py runs
