"""systemd readiness and watchdog notifications (``sd_notify``), stdlib only.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) to a
``Type=notify`` service; the service sends newline-separated ``KEY=value`` datagrams to it.
Outside systemd the variable is unset and every method is a no-op.

A failed send never stops the keeper: it is logged once and later sends keep trying
(systemd restarts a service whose watchdog pings stop arriving, which is the right
outcome if the socket is truly gone).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from keeper.core.logs import get_logger

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"

_log = get_logger("keeper.ops.notify")


def _socket_address(value: str) -> str | None:
    """The AF_UNIX address for a NOTIFY_SOCKET value, or None when it is not one we speak."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # systemd ≥ 254 may also hand out vsock:… addresses (VMs); not used on a host.
    return None


def _one_line(text: str) -> str:
    # A newline in STATUS= would let the text inject another assignment (READY=1…).
    return " ".join(text.splitlines()).strip()


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when not asked.

    None when ``WATCHDOG_USEC`` is unset, not a positive integer, or when ``WATCHDOG_PID``
    names another process (the variables were inherited from a parent, not meant for us).
    """
    raw_usec = environ.get(WATCHDOG_USEC_ENV, "").strip()
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get(WATCHDOG_PID_ENV, "").strip()
    if raw_pid:
        try:
            watchdog_pid = int(raw_pid)
        except ValueError:
            return None
        if watchdog_pid != (os.getpid() if pid is None else pid):
            return None
    return usec / 1_000_000 / 2


class SystemdNotifier:
    """Sends ``sd_notify`` messages to ``$NOTIFY_SOCKET``; a no-op when it is unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        raw = environ.get(NOTIFY_SOCKET_ENV, "")
        self._address = _socket_address(raw) if raw else None
        self._sock: socket.socket | None = None
        self._failure_logged = False
        if raw and self._address is None:
            _log.warning(
                "notify_socket_unsupported",
                notify_socket=raw,
                hint="NOTIFY_SOCKET is neither a path nor @abstract; systemd notifications are off",
            )

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        """Startup finished (also sent again after a reload)."""
        return self._send("READY=1", status)

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by ``systemctl status``."""
        return self._send(None, text)

    def watchdog(self) -> bool:
        """Keep-alive ping; send at least every :func:`watchdog_interval` seconds."""
        return self._send("WATCHDOG=1", None)

    def reloading(self, status: str | None = None) -> bool:
        """A config reload (SIGHUP) started; follow with :meth:`ready` when done."""
        monotonic_usec = time.monotonic_ns() // 1000
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}", status)

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown started."""
        return self._send("STOPPING=1", status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, state: str | None, status: str | None) -> bool:
        """True when the datagram was sent; False when disabled or the send failed."""
        if self._address is None:
            return False
        lines = [] if state is None else [state]
        if status is not None:
            lines.append(f"STATUS={_one_line(status)}")
        if not lines:
            return False
        payload = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            self.close()  # a fresh socket next time, in case this one is broken
            if not self._failure_logged:
                self._failure_logged = True
                _log.warning(
                    "notify_send_failed",
                    notify_socket=self._address.replace("\0", "@"),
                    error=exc.strerror or str(exc),
                    hint="systemd will not see readiness or watchdog pings; further failures "
                    "are not logged",
                )
            return False
        return True
