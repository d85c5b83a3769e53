"""A local starknet-devnet process: on a free port, in its own process group.

    with start_devnet(work_dir) as devnet:
        devnet.url, devnet.accounts, devnet.create_block(), devnet.abort_blocks(n), ...

Every devnet is started with ``keeper.devnet.integrity.DEVNET_ARGS`` (a Sierra length
limit that admits Integrity's verifier class; harmless otherwise) unless the caller's
``extra_args`` already set that option (starknet-devnet refuses an option given twice).
The binary is the pinned one (``make setup`` installs it into ~/.cargo/bin). Readiness
is waited for with a deadline; on exit the whole process group is stopped (SIGTERM, then
SIGKILL). Used by ``obsqra-keeper demo``, the benchmarks and (through tests/devnet.py)
the devnet tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from keeper.core.errors import KeeperError
from keeper.devnet.deploy import DevnetAccount
from keeper.devnet.integrity import DEVNET_ARGS

DEVNET_VERSION = "0.8.2"
__all__ = [
    "DEVNET_VERSION",
    "Devnet",
    "DevnetAccount",
    "DevnetError",
    "DevnetMissingError",
    "devnet_args",
    "devnet_binary",
    "free_port",
    "start_devnet",
    "stop_process_group",
]
_READY_DEADLINE_S = 60.0
_STOP_GRACE_S = 10.0
_POLL_S = 0.05


class DevnetError(KeeperError):
    """starknet-devnet is missing, did not start, or refused a request."""

    code = "devnet"


class DevnetMissingError(DevnetError):
    code = "devnet_missing"


@dataclass
class Devnet:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    accounts: list[DevnetAccount] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rpc(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            payload["params"] = params
        try:
            reply = httpx.post(self.url, json=payload, timeout=30).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DevnetError(f"{method} at {self.url} failed: {exc}") from exc
        if "error" in reply:
            raise DevnetError(f"{method}: {reply['error']}")
        return reply["result"]

    def create_block(self) -> str:
        return str(self.rpc("devnet_createBlock")["block_hash"])

    def abort_blocks(self, starting_block_id: dict[str, Any] | str) -> list[str]:
        """Abort blocks from ``starting_block_id`` (e.g. {"block_number": 5}) to the tip."""
        result = self.rpc("devnet_abortBlocks", {"starting_block_id": starting_block_id})
        return [str(h) for h in result["aborted"]]

    def increase_time(self, seconds: int) -> Any:
        return self.rpc("devnet_increaseTime", {"time": seconds})

    def dump(self, path: Path) -> None:
        self.rpc("devnet_dump", {"path": str(path)})

    def load(self, path: Path) -> None:
        self.rpc("devnet_load", {"path": str(path)})

    def block_number(self) -> int:
        return int(self.rpc("starknet_blockNumber"))

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def devnet_binary() -> str:
    """Path of starknet-devnet (PATH, then $CARGO_HOME/bin); DevnetMissingError if absent."""
    found = shutil.which("starknet-devnet")
    if found:
        return found
    cargo_bin = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin"
    candidate = cargo_bin / "starknet-devnet"
    if candidate.is_file():
        return str(candidate)
    raise DevnetMissingError(
        f"starknet-devnet {DEVNET_VERSION} is not installed (not on PATH nor in {cargo_bin}): "
        "run `make setup`"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(devnet: Devnet) -> None:
    deadline = time.monotonic() + _READY_DEADLINE_S
    last_error = ""
    while time.monotonic() < deadline:
        if devnet.process.poll() is not None:
            raise DevnetError(
                f"starknet-devnet exited with {devnet.process.returncode}: {devnet.log_tail()}"
            )
        try:
            if httpx.get(devnet.url + "/is_alive", timeout=1).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last_error = str(exc)
        time.sleep(_POLL_S)  # polling a child process, bounded by the deadline
    raise DevnetError(
        f"starknet-devnet not ready within {_READY_DEADLINE_S:.0f} s ({last_error}): "
        f"{devnet.log_tail()}"
    )


def devnet_args(extra_args: Sequence[str]) -> list[str]:
    """``extra_args`` after the ``DEVNET_ARGS`` options it does not set itself."""
    added: list[str] = []
    for option, value in zip(DEVNET_ARGS[::2], DEVNET_ARGS[1::2], strict=True):
        if not any(a == option or a.startswith(option + "=") for a in extra_args):
            added += [option, value]
    return [*added, *extra_args]


@contextmanager
def start_devnet(
    work_dir: Path, seed: int = 0, extra_args: Sequence[str] = (), accounts: int = 3
) -> Iterator[Devnet]:
    """A running devnet with ``accounts`` predeployed accounts; stopped on exit."""
    binary = devnet_binary()
    port = free_port()
    log_path = work_dir / f"devnet-{port}.log"
    args = [
        binary,
        "--seed",
        str(seed),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--accounts",
        str(accounts),
        "--state-archive-capacity",
        "full",
        *devnet_args(extra_args),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    devnet = Devnet(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_ready(devnet)
        devnet.accounts = [
            DevnetAccount(int(a["address"], 16), int(a["private_key"], 16))
            for a in devnet.rpc("devnet_getPredeployedAccounts")
        ]
        yield devnet
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = _STOP_GRACE_S) -> None:
    """SIGTERM the process group led by ``process``; SIGKILL it after ``grace_s``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=grace_s)
