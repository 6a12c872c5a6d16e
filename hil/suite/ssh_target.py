"""`--target ssh://[user@]HOST[:PORT] --bench BENCH.toml`: a real box on the bench.

The box runs the gateway as its service (image/files/etc/systemd/system/bedside.service);
the bench reaches it over SSH (hil/suite/ssh_box.py) and per scenario:

- writes the scenario's gateway config to the box (`[box] config_path`, the site config
  the unit prefers; the box's own is saved once and put back after the suite), the
  bench PKI's CA and the box's certificate and key (0600, `[box] owner`) and the rule
  file, all under `[box] work_dir`, which holds the scenario's store too (wiped per
  scenario);
- restarts the service (`[service]` commands: systemctl by default), waits until the
  control socket answers through an SSH-forwarded Unix socket, and asks it there
  (ack, pause, snapshot);
- the bench's devices write to the bench's serial ports, each wired to one of the
  box's (`[[cable]]`, taken in order by a scenario's devices);
- kill -9 is `systemctl kill -s KILL`; CPU and RSS come from /proc of the service's
  MainPID, read by one long-running remote loop;
- faults: a partition is an nftables table on the box dropping the uplink's packets
  to and from the bench broker (the SSH session stays up); disk full is a fallocate'd
  file filling the file system of `work_dir`; the box's clock is stepped with `date -s`
  and stepped back at the fault's end;
- after the scenario the box's alarm events and sink (`alarms.jsonl`, `records.jsonl`
  in `[box] evidence_dir`, off /data) are read back before the service stops, so
  `where = "local"` and `no_loss` are judged as on `--target local` (the box's clock
  must follow the bench's: NTP, or the bench as its time server).

A cable pull cannot be played (the adapter stays plugged); `silence` is what a dead
device looks like from the box. A device reboot can: the bench's oximeter restarts
behind its cable (hil/suite/devices.py); the monitors' bench devices answer on ptys,
not on a cable, so rebooting one is refused.
"""

from __future__ import annotations

import asyncio
import shlex
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from appliance.control import ControlError, request
from hil.broker import Broker
from hil.suite.devices import PROTOCOL
from hil.suite.faults import Milestone, check_plays
from hil.suite.spec import Scenario, Suite, SuiteError
from hil.suite.ssh_box import SshBox, SshLogin, reader
from hil.suite.target import Sample, TargetError, gateway_config

__all__ = [
    "SSH_PLAYS",
    "BenchConfig",
    "SshRig",
    "SshTarget",
    "check_ssh_suite",
    "fill_command",
    "load_bench",
    "login_for",
    "restore_config",
    "save_config",
]

SSH_PLAYS: Final = frozenset({"partition", "disk_full", "box_clock_step"})
_READY_TIMEOUT_S: Final = 30.0
_SAMPLE_EVERY_S: Final = 0.5
_TABLE: Final = "bedside_hil_partition"
_FILL: Final = "hil-fill"
_FILL_TRIES: Final = 50


def fill_command(folder: str) -> str:
    """The box's shell fills `folder`'s file system: the fill file is extended by what
    is free now until nothing is (one fallocate of the free space fails whole when the
    gateway's writes take some of it first; see `local_box.DataFs.fill`)."""
    w, f = shlex.quote(folder), shlex.quote(f"{folder}/{_FILL}")
    free = f"$(($(stat -f -c '%a * %S' {w})))"
    return (
        f'for try in $(seq {_FILL_TRIES}); do n={free}; [ "$n" -eq 0 ] && exit 0; '
        f'fallocate -o $(stat -c %s {f} 2>/dev/null || echo 0) -l "$n" {f} 2>/dev/null; done; '
        f"[ {free} -eq 0 ] || {{ echo 'fallocate: {folder} still has room after {_FILL_TRIES} fills' >&2; exit 1; }}"
    )


@dataclass(frozen=True, slots=True)
class Service:
    restart: str = "systemctl restart bedside"
    start: str = "systemctl start bedside"
    stop: str = "systemctl stop bedside"
    kill: str = "systemctl kill -s KILL --kill-whom=main bedside"
    main_pid: str = "systemctl show -p MainPID --value bedside"
    # The box's host firewall is rendered from the site config (appliance/firewall.py):
    # after the bench writes its config (outbound to the bench broker, SSH from the
    # bench), and again after the box's own config is back.
    firewall: str = "systemctl restart bedside-firewall"


@dataclass(frozen=True, slots=True)
class Box:
    config_path: str = "/data/config/gateway.toml"
    work_dir: str = "/data/bedside-hil"  # the scenario's store, keys and rules (wiped per scenario)
    # The box's alarm events and sink, read back by the bench: not on /data, so a full
    # /data does not take the bench's view of the alarms with it. The unit's runtime
    # folder is one the service may write (ProtectSystem=strict) and outlives a kill.
    evidence_dir: str = "/run/bedside/hil"
    control_socket: str = "/run/bedside/control.sock"
    owner: str = "bedside:bedside"


@dataclass(frozen=True, slots=True)
class Cable:
    bench: str  # the bench's serial port (a USB-serial adapter)
    box: str  # the box's serial port at the other end


@dataclass(frozen=True, slots=True)
class BenchConfig:
    broker_host: str  # the bench's address the box reaches the bench broker at
    cables: tuple[Cable, ...]
    box: Box = field(default_factory=Box)
    service: Service = field(default_factory=Service)
    identity: str = ""
    known_hosts: str = ""


def _section(raw: Any, cls: type[Any], where: str) -> Any:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: must be a table")
    for key, value in raw.items():
        if key not in cls.__dataclass_fields__:
            raise SuiteError(f"{where}: unknown key {key!r}")
        if not isinstance(value, str) or not value:
            raise SuiteError(f"{where}.{key}: must be a non-empty string")
    return cls(**raw)


def load_bench(path: str) -> BenchConfig:
    """The bench file (`--bench`); SuiteError with one line naming the key."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SuiteError(f"--bench {path}: cannot read: {exc}") from None
    known = {"broker_host", "cable", "box", "service", "ssh"}
    if unknown := sorted(set(raw) - known):
        raise SuiteError(f"{path}: unknown key {unknown[0]!r}")
    host = raw.get("broker_host")
    if not isinstance(host, str) or not host:
        raise SuiteError(f"{path}: needs broker_host (the bench's address the box reaches)")
    cables = tuple(_section(c, Cable, f"{path}: cable[{i}]") for i, c in enumerate(raw.get("cable", [])))
    if not cables:
        raise SuiteError(f"{path}: needs at least one [[cable]] (bench = ..., box = ...)")
    ssh = raw.get("ssh", {})
    if not isinstance(ssh, dict) or set(ssh) - {"identity", "known_hosts"}:
        raise SuiteError(f"{path}: [ssh] takes identity and known_hosts")
    return BenchConfig(
        host,
        cables,
        _section(raw.get("box", {}), Box, f"{path}: box"),
        _section(raw.get("service", {}), Service, f"{path}: service"),
        str(ssh.get("identity", "")),
        str(ssh.get("known_hosts", "")),
    )


def check_ssh_suite(suite: Suite, bench: BenchConfig) -> None:
    """SuiteError for what the bench cannot play on the box."""
    check_plays(suite, SSH_PLAYS, "ssh", "use --target vm")
    for sc in suite.scenarios:
        if wireless := [d.id for d in sc.devices if d.family in ("hl7", "ble")]:
            raise SuiteError(f"scenario {sc.name!r}: --target ssh wires serial devices only, not {', '.join(wireless)}")
        if len(sc.devices) > len(bench.cables):
            raise SuiteError(
                f"scenario {sc.name!r}: {len(sc.devices)} devices, the bench has {len(bench.cables)} cables"
            )
        if any(s.action == "cable_pull" for s in sc.steps):
            raise SuiteError(f"scenario {sc.name!r}: --target ssh cannot pull a cable (use silence)")
        # A reboot is the bench's device restarting behind its cable: only the devices the
        # bench writes to a cable (the oximeters; the monitors answer on a pty here).
        families = {d.id: d.family for d in sc.devices}
        for step in sc.steps:
            if step.action == "device_reboot" and families[step.device] not in PROTOCOL:
                raise SuiteError(
                    f"scenario {sc.name!r}: --target ssh cannot reboot {step.device!r}: the bench wires "
                    f"{', '.join(PROTOCOL)} to its cables"
                )


def login_for(user: str, host: str, port: int, bench: BenchConfig) -> SshLogin:
    return SshLogin(host, user, port, bench.identity, bench.known_hosts)


def save_config(box: SshBox, bench: BenchConfig) -> None:
    """The box's own site config, kept aside while the suite's replace it (once: a
    copy left by an interrupted suite is the box's, not a suite's)."""
    c = shlex.quote(bench.box.config_path)
    box.run(f"if [ -f {c} ] && [ ! -f {c}.hil-saved ]; then cp -p {c} {c}.hil-saved; fi")


def restore_config(box: SshBox, bench: BenchConfig) -> None:
    """The box's own config back (none if it had none) and its service restarted on it."""
    c = shlex.quote(bench.box.config_path)
    box.run(f"if [ -f {c}.hil-saved ]; then mv -f {c}.hil-saved {c}; else rm -f {c}; fi", check=False)
    box.run(bench.service.firewall.format(config=c), check=False)
    box.run(bench.service.restart.format(config=c), check=False)


class SshTarget:
    """The box's gateway service, for one scenario."""

    name = "ssh"

    def __init__(self, box: SshBox, bench: BenchConfig, workdir: Path) -> None:
        self.box = box
        self.bench = bench
        self.workdir = workdir
        self.starts = 0
        self.socket = box.forward_socket(bench.box.control_socket)
        self._sampler: Any = None
        self._last: Sample | None = None

    def _service(self, command: str) -> None:
        self.box.run(command.format(config=shlex.quote(self.bench.box.config_path)))

    async def start(self) -> None:
        svc = self.bench.service
        await asyncio.to_thread(self._service, svc.restart if self.starts == 0 else svc.start)
        self.starts += 1
        if self._sampler is None:
            self._start_sampler()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if await self.control({"cmd": "list"}) is not None:
                return
            await asyncio.sleep(0.1)
        raise TargetError(
            f"the box's gateway did not answer on {self.bench.box.control_socket} in {_READY_TIMEOUT_S:.0f} s"
        )

    def kill(self) -> None:
        self._service(self.bench.service.kill)

    async def stop(self) -> int | None:
        await asyncio.to_thread(self._fetch_evidence)  # a stop may remove the runtime folder
        await asyncio.to_thread(self._service, self.bench.service.stop)
        if self._sampler is not None:
            self._sampler.terminate()
            self._sampler.wait(10)
        return None

    def _fetch_evidence(self) -> None:
        box = self.bench.box
        for folder, name in ((box.evidence_dir, "alarms.jsonl"), (box.evidence_dir, "records.jsonl")):
            text = self.box.run(f"cat {shlex.quote(f'{folder}/{name}')} 2>/dev/null || true")
            (self.workdir / name).write_text(text)
        (self.workdir / "gateway.toml").write_text(self.box.run(f"cat {shlex.quote(box.config_path)}"))

    async def control(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(request, self.socket, payload, 2.0)
        except (ControlError, OSError, ValueError):
            return None

    def _start_sampler(self) -> None:
        pid_cmd = self.bench.service.main_pid.format(config=shlex.quote(self.bench.box.config_path))
        loop = (
            "t=$(getconf CLK_TCK); g=$(getconf PAGESIZE); while :; do p=$(" + pid_cmd + " 2>/dev/null); "
            'if [ -n "$p" ] && [ "$p" -gt 0 ] 2>/dev/null && [ -r /proc/$p/stat ]; then '
            "echo $t $g $(cut -d')' -f2- /proc/$p/stat | cut -d' ' -f13,14) $(cut -d' ' -f2 /proc/$p/statm); "
            f"else echo -; fi; sleep {_SAMPLE_EVERY_S}; done"
        )
        self._sampler = self.box.stream(loop)
        reader(self._sampler, self._on_sample)

    def _on_sample(self, line: str) -> None:
        parts = line.split()
        if len(parts) != 5:
            self._last = None  # between a kill and the restart
            return
        tck, page, utime, stime, rss = (int(p) for p in parts)
        self._last = Sample(time.time(), (utime + stime) / tck, rss * page)

    def sample(self) -> Sample | None:
        last = self._last
        return last if last is not None and time.time() - last.t < 3 * _SAMPLE_EVERY_S else None


class SshRig:
    """The box for one scenario: its files, its service and its faults."""

    plays = SSH_PLAYS

    def __init__(self, box: SshBox, bench: BenchConfig, scenario: Scenario, workdir: Path) -> None:
        self.box = box
        self.bench = bench
        self.scenario = scenario
        self.workdir = workdir
        self.broker_host = bench.broker_host
        self.wiring = {d.id: c.bench for d, c in zip(scenario.devices, bench.cables, strict=False)}
        self._broker_port = 0

    @property
    def _work(self) -> str:
        return self.bench.box.work_dir

    def open(self) -> None:
        w, e, owner = (shlex.quote(p) for p in (self._work, self.bench.box.evidence_dir, self.bench.box.owner))
        self.box.run(f"rm -rf {w} {e} && mkdir -p {w}/keys {e} && chown -R {owner} {w} {e}")

    def target(self, broker: Broker, sock: Path) -> SshTarget:
        self._broker_port = broker.port
        work, evidence, owner = Path(self._work), Path(self.bench.box.evidence_dir), self.bench.box.owner
        rules = str(work / "rules.toml") if self.scenario.rules_path else ""
        sc, control = self.scenario, Path(self.bench.box.control_socket)
        text = gateway_config(evidence, broker, sc.devices, rules, control, data_dir=work)
        for dev, cable in zip(sc.devices, self.bench.cables, strict=False):
            text = text.replace(f'port = "{evidence / dev.id}"', f'port = "{cable.box}"')
        text = text.replace(str(broker.pki.dir), str(work / "keys"))  # the same names, on the box
        bench_ip = self.box.run('echo "${SSH_CLIENT%% *}"').strip()  # the bench as the box sees it
        text += f'[firewall]\nssh_from = ["{bench_ip}/{128 if ":" in bench_ip else 32}"]\n'  # keep the bench in
        files = broker.pki.client("gw-1")
        for src, mode in ((files.ca, 0o644), (files.cert, 0o644), (files.key, 0o600)):
            self.box.write(str(work / "keys" / Path(src).name), Path(src).read_bytes(), mode, owner)
        if rules:
            self.box.write(rules, Path(self.scenario.rules_path).read_bytes(), 0o644, owner)
        self.box.write(str(work / "gateway.toml"), text.encode(), 0o644, owner)
        self.box.write(self.bench.box.config_path, text.encode(), 0o644, owner)
        self.box.run(self.bench.service.firewall.format(config=shlex.quote(self.bench.box.config_path)))
        return SshTarget(self.box, self.bench, self.workdir)

    def _partition_rules(self) -> str:
        """Drop the uplink's packets to and from the bench broker, nothing else (the SSH
        session the bench plays the fault over stays up)."""
        host, port = self.bench.broker_host, self._broker_port
        ip = "ip6" if ":" in host else "ip"
        drop = f"{ip} daddr {host} tcp dport {port} drop\n    {ip} saddr {host} tcp sport {port} drop"
        return (
            f"table inet {_TABLE} {{\n"
            f"  chain out {{\n    type filter hook output priority -300; policy accept;\n    {drop}\n  }}\n"
            f"  chain in {{\n    type filter hook input priority -300; policy accept;\n    {drop}\n  }}\n}}\n"
        )

    async def begin(self, action: str, offset_s: float) -> None:
        cmd = {
            "partition": "nft -f -",
            "disk_full": fill_command(self._work),
            "box_clock_step": f"date -s @$(($(date +%s) + {round(offset_s)}))",
        }[action]
        stdin = self._partition_rules().encode() if action == "partition" else b""
        await asyncio.to_thread(self.box.run, cmd, stdin)

    async def end(self, action: str, offset_s: float, milestone: Milestone) -> None:
        cmd = {
            "partition": f"nft delete table inet {_TABLE}",
            "disk_full": f"rm -f {shlex.quote(self._work)}/{_FILL}",
            "box_clock_step": f"date -s @$(($(date +%s) - {round(offset_s)}))",
        }[action]
        await asyncio.to_thread(self.box.run, cmd)

    def close(self) -> None:
        """Whatever a failed run left behind on the box: the partition, the fill file."""
        self.box.run(
            f"nft delete table inet {_TABLE} 2>/dev/null; rm -f {shlex.quote(self._work)}/{_FILL}", check=False
        )
