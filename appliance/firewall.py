"""The box's host firewall, derived from its site configuration: an nftables ruleset.

Default drop in both directions. Inbound, only what the site config enables: the
network listeners of its devices and of the census feed (their ports, on their
address unless it is a wildcard), the web console, and SSH from the management
subnets in `firewall.ssh_from` (none by default). Outbound, only the broker, the fleet
server, the census FHIR server and the NTP servers of `time.ntp_servers` (their ports;
their address too when the config names an IP, since a DNS name is resolved at connect
time), DNS and DHCP. Loopback,
replies to allowed connections, the ICMP a network needs (IPv6 neighbour discovery,
path MTU) and rate-limited ping pass. Dropped packets are counted per direction.

A pure function of the config (`render`); `bedside firewall --apply` loads it with
`nft -f` as one atomic transaction (the `bedside-firewall.service` unit, at boot before
the network comes up). If the site config cannot be read the unit loads the base
ruleset, which opens nothing inbound: the box fails closed.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from appliance.config import Config, load_config
from drivers.address import parse_listen

__all__ = ["TABLE", "Opening", "base_ruleset", "cmd_firewall", "openings", "render"]

TABLE: Final = "bedside"
SSH_PORT: Final = 22
NTP_PORT: Final = 123


@dataclass(frozen=True, slots=True)
class Opening:
    """One allowed flow: inbound to our `port`, or outbound to a peer's (TCP unless `proto`)."""

    direction: str  # "in" | "out"
    port: int
    address: str = ""  # an IP (ours inbound, the peer's outbound); "" = any
    sources: tuple[str, ...] = field(default=())  # inbound only: allowed source networks
    why: str = ""  # the config key it comes from (a comment in the ruleset)
    proto: str = "tcp"  # "tcp" | "udp"


def _ip(host: str) -> str:
    """The host as an IP literal, or "" for a name or a wildcard (then: any address). A
    scoped IPv6 address (fe80::1%eth0) is matched without its zone (nft has none)."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return ""
    return "" if address.is_unspecified else str(address)


def _net(text: str) -> str:
    """A network as nft writes it (10.0.0.0/8, never 10.0.0.0/255.0.0.0)."""
    return str(ipaddress.ip_network(re.sub(r"%[^/]*", "", text), strict=False))


def _url_opening(url: str, why: str, default_port: int) -> Opening | None:
    parts = urlsplit(url if "://" in url else f"//{url}")
    try:
        port = parts.port or default_port
    except ValueError:  # not a port: nothing to open (the config check names the key)
        return None
    if not parts.hostname or not port:
        return None
    return Opening("out", port, _ip(parts.hostname), why=why)


_COMMENT: Final = re.compile(r"[^A-Za-z0-9._:\[\]-]")


def _comment(why: str) -> str:
    """Config text never reaches the ruleset as is: a comment keeps only safe characters
    (a device id with a quote must not end the comment and add a rule of its own)."""
    return f' comment "{_COMMENT.sub("_", why)[:100]}"' if why else ""


def openings(config: Config) -> list[Opening]:
    """Every flow the site config needs, each naming the key it comes from."""
    out: list[Opening] = []
    listeners = [(f"devices.{dev.id}.port", dev.port) for dev in config.devices]
    if config.clinical.adt_listen:
        listeners.append(("clinical.adt_listen", config.clinical.adt_listen))
    for why, port in listeners:
        listen = parse_listen(port)  # checked when the config was parsed
        if listen is not None and listen.port:
            out.append(Opening("in", listen.port, _ip(listen.host), why=why))
    if config.console.listen_host:
        out.append(Opening("in", config.console.port, _ip(config.console.listen_host), why="console.listen_host"))
    if config.firewall.ssh_from:
        out.append(Opening("in", SSH_PORT, sources=config.firewall.ssh_from, why="firewall.ssh_from"))
    if config.uplink.host:
        out.append(Opening("out", config.uplink.port, _ip(config.uplink.host), why="uplink.host"))
    for why, url, default in (
        ("ota.server_url", config.ota.server_url, 443),
        ("clinical.census_fhir_url", config.clinical.census_fhir_url, 443),
    ):
        if url and (opening := _url_opening(url, why, default)):
            out.append(opening)
    for i, dest in enumerate(config.firewall.outbound):
        if opening := _url_opening(dest, f"firewall.outbound[{i}]", 0):
            out.append(opening)
    # NTP only to the site's servers (time.ntp_servers): an address as given; a host name
    # is resolved by the client at run time, so then port 123 to any address.
    for i, server in enumerate(config.time.ntp_servers):
        out.append(Opening("out", NTP_PORT, _ip(server), why=f"time.ntp_servers[{i}]", proto="udp"))
    return out


def _match_address(address: str, side: str) -> str:
    if not address:
        return ""
    family = "ip6" if ipaddress.ip_address(address).version == 6 else "ip"
    return f"{family} {side} {address} "


def _rule(op: Opening) -> list[str]:
    side = "daddr"  # ours inbound, the peer's outbound: the destination either way
    head = _match_address(op.address, side)
    comment = _comment(op.why)
    if not op.sources:
        return [f"{head}{op.proto} dport {op.port} accept{comment}"]
    rules = []
    for net in map(_net, op.sources):
        family = "ip6" if ipaddress.ip_network(net).version == 6 else "ip"
        rules.append(f"{family} saddr {net} {head}{op.proto} dport {op.port} accept{comment}")
    return rules


_ICMP_IN: Final = (
    "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, mld-listener-query, "
    "packet-too-big, time-exceeded, parameter-problem, destination-unreachable } accept",
    "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept",
    "icmp type echo-request limit rate 5/second accept",
    "icmpv6 type echo-request limit rate 5/second accept",
)
_OUT_ALWAYS: Final = (
    "icmp type { echo-request, destination-unreachable } accept",
    "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld2-listener-report, echo-request, "
    "packet-too-big, destination-unreachable } accept",
    'meta l4proto { tcp, udp } th dport 53 accept comment "DNS"',
    'udp sport 68 udp dport 67 accept comment "DHCP"',
    'udp sport 546 udp dport 547 accept comment "DHCPv6"',
)


def _chain(name: str, rules: list[str]) -> list[str]:
    head = f"\t\ttype filter hook {name} priority filter; policy drop;"
    return [f"\tchain {name} {{", head, *(f"\t\t{r}" for r in rules), "\t}"]


def render(found: list[Opening]) -> str:
    """The nftables script: replaces our table in one transaction, nothing else."""
    inbound = [
        "iif lo accept",
        "ct state established,related accept",
        "ct state invalid drop",
        'udp sport 67 udp dport 68 accept comment "DHCP"',
        'udp sport 547 udp dport 546 accept comment "DHCPv6"',
        *_ICMP_IN,
        *(r for op in found if op.direction == "in" for r in _rule(op)),
        'counter name "dropped_in" drop',
    ]
    outbound = [
        "oif lo accept",
        "ct state established,related accept",
        *_OUT_ALWAYS,
        *(r for op in found if op.direction == "out" for r in _rule(op)),
        'counter name "dropped_out" drop',
    ]
    lines = [
        f"table inet {TABLE}",  # declared, then deleted: `nft -f` works whether or not it exists
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "\tcounter dropped_in {}",
        "\tcounter dropped_out {}",
        *_chain("input", inbound),
        *_chain("output", outbound),
        *_chain("forward", []),
        "}",
    ]
    return "\n".join(lines) + "\n"


def base_ruleset() -> str:
    """Fail closed: nothing inbound but replies, outbound only DNS and DHCP (no site
    config, no NTP servers: bedside-timesync writes none then either)."""
    return render([])


def _load(ruleset: str) -> str:
    """'' when nft loaded the ruleset, else its error (one line)."""
    try:
        res = subprocess.run(["nft", "-f", "-"], input=ruleset, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nft: {exc}"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    return "" if res.returncode == 0 else (lines[0] if lines else f"nft exited {res.returncode}")


def cmd_firewall(args: argparse.Namespace) -> int:
    """Print the site's ruleset, or load it (`--apply`: fail closed on a bad config)."""
    try:
        ruleset = render(openings(load_config(args.config)))
    except Exception as exc:  # any failure here must still leave the box closed
        if args.apply:  # nothing inbound rather than a box left open
            failed = _load(base_ruleset())
            why = f"{exc}; loaded the base ruleset (nothing inbound){failed and ': ' + failed}"
            print(f"bedside firewall: {why}", file=sys.stderr)
        else:
            print(f"bedside firewall: {exc}", file=sys.stderr)
        return 2
    if not args.apply:
        sys.stdout.write(ruleset)
        return 0
    if problem := _load(ruleset):
        failed = _load(base_ruleset())
        why = f"nft refused the ruleset: {problem}; loaded the base ruleset{failed and ': ' + failed}"
        print(f"bedside firewall: {why}", file=sys.stderr)
        return 1
    return 0
