"""The keeper package's error hierarchy, under the distribution's ``ObsqraError``.

Each error has a stable ``code`` and a message written for the operator: what went
wrong and what to do. ``exit_code`` is what the process exits with when the error
ends it (sysexits where one fits; systemd does not restart on 78).
"""

from __future__ import annotations

from prover.errors import ObsqraError

__all__ = [
    "EX_CONFIG",
    "EX_USAGE",
    "ChainError",
    "ConfigError",
    "KeeperError",
    "ObsqraError",
    "StoreError",
    "UsageError",
]

EX_USAGE = 2  # argparse's convention for bad command lines and bad input files
EX_CONFIG = 78  # sysexits.h EX_CONFIG; RestartPreventExitStatus=78 in the unit


class KeeperError(ObsqraError):
    """Base of every error raised by ``keeper`` (``ObsqraError`` is the distribution's)."""

    code = "keeper_error"


class UsageError(KeeperError):
    """A bad command line or unreadable input file."""

    code = "usage"
    exit_code = EX_USAGE


class ConfigError(KeeperError):
    """Invalid or missing configuration; ``problems`` holds one line per field."""

    code = "config"
    exit_code = EX_CONFIG

    def __init__(self, problems: list[str], *, source: str = "") -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration{where}:\n{lines}")


class StoreError(KeeperError):
    """The SQLite store cannot be opened, migrated or written."""

    code = "store"
    exit_code = 74  # EX_IOERR


class ChainError(KeeperError):
    """The Starknet node or a transaction did something the keeper cannot accept."""

    code = "chain"
