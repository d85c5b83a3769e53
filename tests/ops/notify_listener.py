"""A stand-in for systemd's notify socket: bind it, hand its env to the keeper, read messages.

    with notify_listener() as listener:
        proc = subprocess.Popen([...obsqra-keeper, "run", ...],
                                env={**os.environ, **listener.environ(watchdog_usec=2_000_000)})
        listener.wait_for("READY=1")
        listener.wait_for("WATCHDOG=1")
        proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1")
    assert listener.first_index("READY=1") < listener.first_index("WATCHDOG=1") < ...

In-process (the daemon in the test's event loop): ``async with asyncio.timeout(30): await
listener.wait_for_async("READY=1")``.
``wait_for`` blocks on the socket with a timeout (no sleeping); it raises TimeoutError
naming what was received so far.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class NotifyListener:
    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self._sock = sock
        self.notify_socket = notify_socket  # the value for $NOTIFY_SOCKET
        self.messages: list[str] = []  # every datagram, in arrival order

    def environ(
        self, *, watchdog_usec: int | None = None, pid: int | None = None
    ) -> dict[str, str]:
        """Environment for the process under test (add WATCHDOG_USEC/PID when asked)."""
        env = {"NOTIFY_SOCKET": self.notify_socket}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
            if pid is not None:
                env["WATCHDOG_PID"] = str(pid)
        return env

    def assignments(self) -> list[str]:
        """Every ``KEY=value`` line received, in order."""
        return [line for message in self.messages for line in message.split("\n") if line]

    def first_index(self, assignment: str) -> int:
        """Position of the first message containing ``assignment`` (ValueError if none)."""
        for index, message in enumerate(self.messages):
            if assignment in message.split("\n"):
                return index
        raise ValueError(f"{assignment!r} never received; got {self.messages!r}")

    def _seen(self, assignment: str, start: int) -> bool:
        return any(assignment in m.split("\n") for m in self.messages[start:])

    def receive(self, timeout: float = 10.0) -> str:
        """The next datagram (blocking up to ``timeout`` seconds)."""
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(4096)
        except TimeoutError:
            raise TimeoutError(
                f"no notify message within {timeout} s; received so far: {self.messages!r}"
            ) from None
        message = data.decode("utf-8", "replace")
        self.messages.append(message)
        return message

    def wait_for(self, assignment: str, timeout: float = 30.0, *, since: int = 0) -> list[str]:
        """Receive until a message at index ≥ ``since`` holds ``assignment``; all messages."""
        while not self._seen(assignment, since):
            self.receive(timeout)
        return list(self.messages)

    async def wait_for_async(self, assignment: str, *, since: int = 0) -> list[str]:
        """``wait_for`` for an in-process daemon; bound it with ``asyncio.timeout``."""
        loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        while not self._seen(assignment, since):
            data = await loop.sock_recv(self._sock, 4096)
            self.messages.append(data.decode("utf-8", "replace"))
        return list(self.messages)


@contextmanager
def notify_listener(*, abstract: bool = False) -> Iterator[NotifyListener]:
    """Bind an AF_UNIX datagram socket (a short path in a private temp dir, or abstract)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    # A short directory: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path can be longer.
    directory = None if abstract else tempfile.mkdtemp(prefix="notify-", dir="/tmp")
    try:
        if abstract:
            name = f"obsqra-keeper-test-{os.getpid()}-{uuid.uuid4().hex}"
            sock.bind("\0" + name)
            notify_socket = "@" + name
        else:
            assert directory is not None
            path = Path(directory) / "notify.sock"
            sock.bind(str(path))
            notify_socket = str(path)
        yield NotifyListener(sock, notify_socket)
    finally:
        sock.close()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
