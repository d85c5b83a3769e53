"""Errors of the event stream (all ``KeeperError``s)."""

from __future__ import annotations

from keeper.core.errors import KeeperError

EX_TEMPFAIL = 75  # sysexits.h: temporary failure; systemd restarts the unit


class StreamError(KeeperError):
    """The event source cannot be followed."""

    code = "stream"


class StreamStalledError(StreamError):
    """No message (not even a heartbeat) arrived within the stall deadline."""

    code = "stream_stalled"
    exit_code = EX_TEMPFAIL


class StreamDisconnectedError(StreamError):
    """The connection to the source dropped; the source reconnects with backoff."""

    code = "stream_disconnected"
    exit_code = EX_TEMPFAIL


class ReorgTooDeepError(StreamError):
    """A reorg reached below every block the store remembers: re-sync from start_block."""

    code = "stream_reorg_too_deep"


class DecodeError(ValueError):
    """An event payload that does not match its contract's layout. Quarantined, never raised
    out of the stream."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
