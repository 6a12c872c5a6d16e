"""One exception tree: `BedsideError`, one subclass per subsystem, and the exit code
the `bedside` command line gives each.

Every subsystem's own errors (ConfigError, StoreError, RuleError, OtaError, …) derive
from their subsystem's class here, so the command line decides exit codes by subsystem
in one table instead of listing error classes module by module (and without importing
those modules: `bedside` loads only what a subcommand uses).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "BedsideConfigError",
    "BedsideDeviceError",
    "BedsideError",
    "BedsideInputError",
    "BedsideOtaError",
    "BedsideRulesError",
    "BedsideStoreError",
    "BedsideUplinkError",
    "exit_code",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2  # bad input or usage: one line naming the file, key or offset


class BedsideError(Exception):
    """Base of every error the gateway's own code raises."""


class BedsideConfigError(BedsideError):
    """A configuration file, a key in it, or a file it names is wrong."""


class BedsideInputError(BedsideError):
    """Bad input: a command line, a capture, a JSON line, bytes a codec cannot decode."""


class BedsideStoreError(BedsideError):
    """The store-and-forward queue or its key cannot be opened, read or written."""


class BedsideUplinkError(BedsideError):
    """The MQTT uplink: TLS files, the broker connection."""


class BedsideDeviceError(BedsideError):
    """A device link: a port that is missing or vanished."""


class BedsideRulesError(BedsideError):
    """Alarm rules, alarm signal patterns and alarm outputs."""


class BedsideOtaError(BedsideError):
    """Over-the-air updates: the fleet repository, the update client, RAUC, tryboot."""


# First match wins. What the operator can fix by editing a file, key, rule or argument
# named in the message is bad input (2); the rest is a failure (1). An error that is
# both (the uplink's TLS files, the fleet tools' keys) derives from its subsystem and
# from BedsideConfigError or BedsideInputError, which come first here.
_EXIT_CODES: Final[tuple[tuple[type[BedsideError], int], ...]] = (
    (BedsideConfigError, EXIT_USAGE),
    (BedsideInputError, EXIT_USAGE),
    (BedsideRulesError, EXIT_USAGE),
    (BedsideStoreError, EXIT_USAGE),
    (BedsideUplinkError, EXIT_ERROR),
    (BedsideOtaError, EXIT_ERROR),
    (BedsideDeviceError, EXIT_ERROR),
    (BedsideError, EXIT_ERROR),
)


def exit_code(exc: BedsideError) -> int:
    """The `bedside` exit code for an error reported as one line `bedside: <message>`."""
    for cls, code in _EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_ERROR
