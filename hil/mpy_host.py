"""Real MicroPython firmware on a pseudo-terminal: the bench's stand-in for a Pico.

`MpyBoard` copies a firmware folder (optionally with some constants of its config
module changed), starts `node hil/mpy/host.mjs` -- the MicroPython WebAssembly port
from npm with the board model `hil/mpy/machine.py` -- and gives it the master side
of a new pty: the firmware's `machine.UART` reads and writes it, and whatever opens
`board.port` (the gateway's serial output, a pyserial test) is on the other end of
the wire. Pin changes come back as `PinChange`s stamped with this process's
monotonic clock when they arrive.

Not a simulator of the RP2040: only the parts of `machine` the firmware uses, and
the WebAssembly port's double-precision floats (the RP2040 port uses single).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import tty
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from appliance.core.errors import BedsideError

__all__ = ["HOST_SCRIPT", "MpyBoard", "MpyHostError", "PinChange", "find_node", "find_wasm"]

ROOT: Final = Path(__file__).resolve().parents[1]
HOST_SCRIPT: Final = ROOT / "hil" / "mpy" / "host.mjs"
WASM_PACKAGE: Final = "@micropython/micropython-webassembly-pyscript"
# Where tools/bootstrap's test profile installs the npm package (project-local).
NODE_PREFIX: Final = ROOT / ".node"


class MpyHostError(BedsideError):
    """node or the MicroPython WebAssembly package is missing, or the host died."""


@dataclass(frozen=True, slots=True)
class PinChange:
    at: float  # time.monotonic() when the host reported it
    pin: int
    value: int


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise MpyHostError("node is not installed (bash tools/bootstrap test installs it)")
    return node


def find_wasm() -> Path:
    env = os.environ.get("BEDSIDE_MPY_WASM")
    path = Path(env) if env else NODE_PREFIX / "node_modules" / WASM_PACKAGE / "micropython.mjs"
    if not path.is_file():
        raise MpyHostError(f"{path}: MicroPython WebAssembly port missing (bash tools/bootstrap test installs it)")
    return path


def _override(module: Path, values: Mapping[str, object]) -> None:
    text = module.read_text()
    for name, value in values.items():
        text, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, count=1, flags=re.MULTILINE)
        if n != 1:
            raise MpyHostError(f"{module.name}: no constant {name} to override")
    module.write_text(text)


class MpyBoard:
    """One firmware instance on real MicroPython with its UART on a pty (see the module doc)."""

    def __init__(
        self,
        firmware: Path | list[Path],
        *,
        main: str = "main",
        config: str = "",
        overrides: Mapping[str, object] | None = None,
    ) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="bedside-mpy-"))
        for src in firmware if isinstance(firmware, list) else [firmware]:
            for f in sorted(src.glob("*.py")):
                shutil.copy(f, self.work / f.name)
        if overrides:
            _override(self.work / f"{config}.py", overrides)
        self.pins: list[PinChange] = []
        self.events: list[dict[str, object]] = []
        self.stderr_path = self.work / "stderr.log"
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo: the firmware's replies must not come back to it
        os.set_blocking(master, False)
        self._slave = slave
        self.port = os.ttyname(slave)
        cmd = [find_node(), str(HOST_SCRIPT), "--wasm", str(find_wasm()), "--fd", str(master), "--dir", str(self.work)]
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*cmd, "--main", main], stdout=subprocess.PIPE, stderr=err, pass_fds=(master,), text=True
            )
        os.close(master)
        self._reader = threading.Thread(target=self._read, name="mpy-host", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.monotonic()
            msg = json.loads(line)
            if "pin" in msg:
                self.pins.append(PinChange(now, int(msg["pin"]), int(msg["v"])))
            else:
                self.events.append(msg)

    def wait_event(self, name: str, timeout_s: float = 10.0, after: int = 0) -> dict[str, object]:
        """The first host event `name` (boot, repl, soft_reset, crash) at index >= after."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in self.events[after:]:
                if msg.get("event") == name:
                    return msg
            if self.proc.poll() is not None:
                raise MpyHostError(f"MicroPython host exited ({self.proc.returncode}): {self.stderr()}")
            time.sleep(0.01)
        raise MpyHostError(f"no {name!r} from the MicroPython host within {timeout_s} s: {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-2000:]

    def level(self, pin: int, at: float | None = None) -> int:
        """A pin's level at monotonic time `at` (now if None), from the reported changes."""
        value = 0
        for change in list(self.pins):
            if change.pin == pin and (at is None or change.at <= at):
                value = change.value
        return value

    def first_on(self, pin: int, after: float) -> float | None:
        return next((c.at for c in list(self.pins) if c.pin == pin and c.value and c.at >= after), None)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        os.close(self._slave)
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> MpyBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
