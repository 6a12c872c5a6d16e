"""The box's NTP client configuration, derived from the site config's [time] table.

The image runs systemd-timesyncd (image/README.md says why not chrony). Its own
configuration lives on the read-only root; the site's servers come from
/data/config/gateway.toml, so `bedside timesync --apply` (the image's
`bedside-timesync.service`, ordered before the client) writes a drop-in into
/run/systemd/timesyncd.conf.d/, which timesyncd reads after /etc's.

`render` is pure: the drop-in for a `TimeSettings`. It always empties `FallbackNTP=`
(Debian's default is a public pool, which the box's firewall blocks and a hospital
does not want asked), so no servers configured means no synchronisation at all: the
journal says so and the gateway's `clock-unsynced` alarm stays up, visibly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Final

from appliance.config import load_config
from appliance.core.errors import EXIT_OK, EXIT_USAGE
from appliance.sections import TimeSettings

__all__ = ["DROP_IN", "cmd_timesync", "render", "summary"]

DROP_IN: Final = Path("/run/systemd/timesyncd.conf.d/bedside.conf")


def render(time: TimeSettings) -> str:
    """The timesyncd.conf drop-in: the site's servers, no fallback servers."""
    # The names were checked by the config loader (an address or a host name each); still,
    # nothing with a space or a control character is written where it could start a key.
    for server in time.ntp_servers:
        if not server.isprintable() or any(c.isspace() for c in server):
            raise ValueError(f"time.ntp_servers: {server!r} is not one name")
    return (
        "# Written at boot by `bedside timesync --apply` from the site config's [time] table.\n"
        "[Time]\n"
        f"NTP={' '.join(time.ntp_servers)}\n"
        "FallbackNTP=\n"
    )


def summary(time: TimeSettings) -> str:
    """One journal line: what the box will synchronise to, or that it will not."""
    if not time.ntp_servers:
        return (
            "no time.ntp_servers in the site config: the clock will not be synchronised "
            "(the gateway's clock-unsynced alarm stays up)"
        )
    return "NTP servers " + ", ".join(time.ntp_servers) + " (time.ntp_servers)"


def _write(path: Path, text: str) -> None:
    # Atomic: timesyncd may be (re)started at any moment and must never read half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bedside-")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # timesyncd runs as its own user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_timesync(args: argparse.Namespace) -> int:
    """Print the drop-in, or write it (`--apply`). A config that cannot be read writes the
    drop-in without servers (never the last boot's) and exits 2 naming the key."""
    out = Path(args.out)
    try:
        time = load_config(args.config).time
        code = EXIT_OK
    except Exception as exc:  # any failure: no servers rather than stale ones
        print(f"bedside timesync: {exc}", file=sys.stderr)
        if not args.apply:
            return EXIT_USAGE
        time, code = TimeSettings(), EXIT_USAGE
    text = render(time)
    if not args.apply:
        sys.stdout.write(text)
        return code
    _write(out, text)
    print(f"bedside timesync: {summary(time)}; wrote {out}", file=sys.stderr)
    return code
