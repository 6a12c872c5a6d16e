"""Where the benchmarks keep their stores: on a disk, as the box keeps them on /data.

Debian 13 mounts /tmp as a tmpfs, where fsync costs nothing: there a store's durable
commits would be timed against a baseline that never reaches a disk (the queue benchmark's
raw-sqlite ratio fell from 0.35 to 0.1 on it). /var/tmp is on disk on both Debian 12 and 13.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Final

__all__ = ["disk_tempdir"]

ON_DISK: Final = Path("/var/tmp")


def disk_tempdir(prefix: str = "bedside-bench-") -> tempfile.TemporaryDirectory[str]:
    """A temporary directory on disk (the platform's default where there is no /var/tmp)."""
    return tempfile.TemporaryDirectory(prefix=prefix, dir=ON_DISK if ON_DISK.is_dir() else None)
