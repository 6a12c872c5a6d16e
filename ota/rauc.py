"""Installing with RAUC: its D-Bus API, the `rauc` CLI where no bus is available, and an
in-memory twin for unit tests. RAUC verifies the bundle's signature against its
keyring, checks `compatible`, writes the inactive slot and only then makes it the
boot primary; a refused or interrupted install leaves the system as it was.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from ota.errors import InstallError

__all__ = ["Installer", "MemoryRauc", "RaucCli", "RaucDbus", "SlotInfo"]

Progress = Callable[[int, str], None]
SERVICE: Final = "de.pengutronix.rauc"
INSTALLER: Final = "de.pengutronix.rauc.Installer"


@dataclass(frozen=True, slots=True)
class SlotInfo:
    bootname: str
    bundle_version: str | None  # what RAUC installed there; None for a factory slot


class Installer(Protocol):
    async def install(self, bundle: Path, progress: Progress | None = None) -> None: ...

    async def mark(self, good: bool, slot: str = "booted") -> None:
        """Mark the booted slot good (commit) or bad (the bootloader falls back); with
        `slot="other"`, the slot not running (a release the bootloader fell back from)."""

    async def booted(self) -> SlotInfo: ...

    async def primary(self) -> str | None: ...


def _slot_infos(slots: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {name: {k: (v.value if isinstance(v, Variant) else v) for k, v in info.items()} for name, info in slots}


class RaucDbus:
    """RAUC's D-Bus service (`de.pengutronix.rauc`, object `/`) on the system bus or `address`."""

    def __init__(self, address: str | None = None, timeout_s: float = 900.0) -> None:
        self.address = address
        self.timeout_s = timeout_s

    async def _bus(self) -> MessageBus:
        try:
            if self.address:
                return await MessageBus(bus_address=self.address).connect()
            return await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, ValueError) as exc:
            raise InstallError(f"no D-Bus for RAUC: {exc}") from None

    @staticmethod
    async def _call(bus: MessageBus, member: str, signature: str = "", body: list[Any] | None = None) -> list[Any]:
        reply = await bus.call(
            Message(destination=SERVICE, path="/", interface=INSTALLER, member=member, signature=signature,
                    body=body or [])
        )  # fmt: skip
        if reply is None or reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply is not None and reply.body else "no reply"
            raise InstallError(f"RAUC {member}: {reply.error_name if reply else ''} {detail}".strip())
        return list(reply.body)

    @staticmethod
    async def _property(bus: MessageBus, name: str) -> Any:
        reply = await bus.call(
            Message(destination=SERVICE, path="/", interface="org.freedesktop.DBus.Properties", member="Get",
                    signature="ss", body=[INSTALLER, name])
        )  # fmt: skip
        if reply is None or reply.message_type == MessageType.ERROR:
            raise InstallError(f"RAUC property {name}: {reply.body if reply else 'no reply'}")
        value = reply.body[0]
        return value.value if isinstance(value, Variant) else value

    async def install(self, bundle: Path, progress: Progress | None = None) -> None:
        bus = await self._bus()
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_message(msg: Message) -> None:
            if msg.message_type != MessageType.SIGNAL:
                return
            if msg.interface == INSTALLER and msg.member == "Completed" and not done.done():
                done.set_result(int(msg.body[0]))
            elif msg.member == "PropertiesChanged" and progress is not None and msg.body:
                changed = msg.body[1]
                if "Progress" in changed:
                    pct, text, _depth = changed["Progress"].value
                    progress(int(pct), str(text))

        try:
            bus.add_message_handler(on_message)
            for rule in (
                f"type='signal',interface='{INSTALLER}',member='Completed'",
                "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
            ):
                await bus.call(
                    Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                            interface="org.freedesktop.DBus", member="AddMatch", signature="s", body=[rule])
                )  # fmt: skip
            await self._call(bus, "InstallBundle", "sa{sv}", [str(bundle), {}])
            async with asyncio.timeout(self.timeout_s):
                result = await done
            if result != 0:
                error = await self._property(bus, "LastError")
                raise InstallError(f"RAUC refused {bundle.name}: {error}")
        except TimeoutError:
            raise InstallError(f"RAUC did not finish installing within {self.timeout_s:g} s") from None
        finally:
            bus.disconnect()

    async def mark(self, good: bool, slot: str = "booted") -> None:
        bus = await self._bus()
        try:
            await self._call(bus, "Mark", "ss", ["good" if good else "bad", slot])
        finally:
            bus.disconnect()

    async def booted(self) -> SlotInfo:
        bus = await self._bus()
        try:
            bootname = str(await self._property(bus, "BootSlot"))
            (slots,) = await self._call(bus, "GetSlotStatus")
        finally:
            bus.disconnect()
        for info in _slot_infos(slots).values():
            if info.get("bootname") == bootname:
                version = info.get("bundle.version")
                return SlotInfo(bootname, str(version) if version else None)
        return SlotInfo(bootname, None)

    async def primary(self) -> str | None:
        bus = await self._bus()
        try:
            (name,) = await self._call(bus, "GetPrimary")
            (slots,) = await self._call(bus, "GetSlotStatus")
        except InstallError:
            return None
        finally:
            bus.disconnect()
        bootname = _slot_infos(slots).get(str(name), {}).get("bootname")
        return str(bootname) if bootname else None


class RaucCli:
    """The `rauc` command line (it talks to the service itself, or runs standalone)."""

    def __init__(self, rauc: str = "rauc", env: dict[str, str] | None = None) -> None:
        self.rauc = rauc
        self.env = env

    async def _run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.rauc, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.env
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            last = (err or out).decode(errors="replace").strip().splitlines()
            raise InstallError(f"rauc {args[0]}: {last[-1] if last else f'exit {proc.returncode}'}")
        return out.decode(errors="replace")

    async def install(self, bundle: Path, progress: Progress | None = None) -> None:
        await self._run("install", str(bundle))

    async def mark(self, good: bool, slot: str = "booted") -> None:
        await self._run("status", "mark-good" if good else "mark-bad", slot)

    async def _status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(await self._run("status", "--detailed", "--output-format=json"))
        return data

    async def booted(self) -> SlotInfo:
        status = await self._status()
        for entry in status.get("slots", []):
            for info in entry.values():
                if info.get("state") == "booted":
                    bundle = (info.get("slot_status") or {}).get("bundle") or {}
                    return SlotInfo(str(info.get("bootname")), bundle.get("version"))
        return SlotInfo(str(status.get("booted", "")), None)

    async def primary(self) -> str | None:
        status = await self._status()
        primary = status.get("boot_primary")
        for entry in status.get("slots", []):
            if primary in entry:
                return str(entry[primary].get("bootname"))
        return None


@dataclass
class MemoryRauc:
    """In-memory twin: two slots, a primary, per-slot versions; `fail` makes installs fail."""

    booted_slot: str = "A"
    versions: dict[str, str | None] = field(default_factory=lambda: {"A": None, "B": None})
    primary_slot: str = "A"
    good: dict[str, bool] = field(default_factory=lambda: {"A": True, "B": False})
    fail: str = ""
    installs: list[Path] = field(default_factory=list)

    @property
    def other(self) -> str:
        return "B" if self.booted_slot == "A" else "A"

    async def install(self, bundle: Path, progress: Progress | None = None) -> None:
        if self.fail:
            raise InstallError(self.fail)
        self.installs.append(bundle)
        self.versions[self.other] = bundle.read_text().strip() if bundle.exists() else bundle.name
        self.good[self.other] = False
        self.primary_slot = self.other
        if progress:
            progress(100, "Installing done.")

    async def mark(self, good: bool, slot: str = "booted") -> None:
        target = self.booted_slot if slot == "booted" else self.other
        self.good[target] = good
        if not good and self.primary_slot == target:
            self.primary_slot = "B" if target == "A" else "A"

    async def booted(self) -> SlotInfo:
        return SlotInfo(self.booted_slot, self.versions[self.booted_slot])

    async def primary(self) -> str | None:
        return self.primary_slot

    def reboot(self) -> None:
        """What the bootloader does: boot the primary."""
        self.booted_slot = self.primary_slot
