from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from notify_listener import notify_listener
from structlog.testing import capture_logs

from keeper.ops.notify import SystemdNotifier, watchdog_interval


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_messages_arrive_in_order(abstract: bool) -> None:
    with notify_listener(abstract=abstract) as listener:
        with SystemdNotifier(listener.environ()) as notifier:
            assert notifier.enabled
            assert notifier.ready("following events from block 12")
            assert notifier.status("epoch 7: proving")
            assert notifier.watchdog()
            assert notifier.watchdog()
            assert notifier.stopping("checkpointing job 3")
        received = [listener.receive(timeout=5) for _ in range(5)]
    assert received == [
        "READY=1\nSTATUS=following events from block 12",
        "STATUS=epoch 7: proving",
        "WATCHDOG=1",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=checkpointing job 3",
    ]


def test_abstract_socket_value_starts_with_at() -> None:
    with notify_listener(abstract=True) as listener:
        assert listener.notify_socket.startswith("@")
        with SystemdNotifier(listener.environ()) as notifier:
            assert notifier.ready()
        assert listener.receive(timeout=5) == "READY=1"


def test_a_newline_in_status_cannot_inject_an_assignment() -> None:
    with notify_listener() as listener:
        with SystemdNotifier(listener.environ()) as notifier:
            notifier.status("bad\nREADY=1\r\nWATCHDOG=1")
        message = listener.receive(timeout=5)
    assert message == "STATUS=bad READY=1 WATCHDOG=1"
    assert message.split("\n") == ["STATUS=bad READY=1 WATCHDOG=1"]


def test_reloading_carries_the_monotonic_time() -> None:
    with notify_listener() as listener:
        with SystemdNotifier(listener.environ()) as notifier:
            notifier.reloading("reloading config")
            notifier.ready("config reloaded")
        reloading, ready = listener.receive(timeout=5), listener.receive(timeout=5)
    lines = reloading.split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=", 1)[1]) > 0
    assert lines[2] == "STATUS=reloading config"
    assert ready == "READY=1\nSTATUS=config reloaded"


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}])
def test_unset_socket_is_a_no_op(environ: dict[str, str]) -> None:
    notifier = SystemdNotifier(environ)
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_unsupported_address_disables_with_a_warning() -> None:
    with capture_logs() as logs:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert [entry["event"] for entry in logs] == ["notify_socket_unsupported"]


def test_send_failure_is_logged_once_and_sending_continues() -> None:
    directory = tempfile.mkdtemp(prefix="notify-", dir="/tmp")
    path = Path(directory) / "later.sock"
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    with capture_logs() as logs:
        assert notifier.ready() is False  # nobody listens yet: no exception
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
    assert [entry["event"] for entry in logs] == ["notify_send_failed"]
    assert logs[0]["notify_socket"] == str(path)

    # The socket appears (systemd back): the next ping gets through.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.settimeout(5)
        assert notifier.watchdog() is True
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()
        notifier.close()
        path.unlink()
        os.rmdir(directory)


# --- watchdog_interval -------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=10**12))
def test_interval_is_half_of_watchdog_usec(usec: int) -> None:
    assert watchdog_interval({"WATCHDOG_USEC": str(usec)}) == usec / 2_000_000


def test_interval_for_a_typical_unit() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0


@pytest.mark.parametrize("value", ["", "0", "-5", "abc", "1.5", "  "])
def test_absent_or_invalid_usec_means_no_watchdog(value: str) -> None:
    assert watchdog_interval({"WATCHDOG_USEC": value}) is None


def test_no_usec_means_no_watchdog() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_PID": str(os.getpid())}) is None


def test_pid_must_be_ours() -> None:
    ours = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(ours) == 1.0
    theirs = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_interval(theirs) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, pid=1) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "x"}) is None
