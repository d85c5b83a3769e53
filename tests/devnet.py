"""A real starknet-devnet for tests, on a free port, in its own process group.

    with start_devnet(tmp_path) as devnet:
        devnet.url, devnet.accounts, devnet.create_block(), devnet.abort_blocks(n), ...

The binary is the pinned one (``make setup`` installs it into ~/.cargo/bin); when it is
missing the fixture FAILS with that instruction rather than skipping.
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
import pytest

DEVNET_VERSION = "0.8.2"
_READY_DEADLINE_S = 60.0
_POLL_S = 0.05


@dataclass(frozen=True)
class DevnetAccount:
    address: int
    private_key: int


@dataclass
class Devnet:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    accounts: list[DevnetAccount] = field(default_factory=list)

    def rpc(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            payload["params"] = params
        reply = httpx.post(self.url, json=payload, timeout=30).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
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


def devnet_binary() -> str:
    found = shutil.which("starknet-devnet")
    if found:
        return found
    cargo_bin = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin"
    candidate = cargo_bin / "starknet-devnet"
    if candidate.is_file():
        return str(candidate)
    pytest.fail(
        f"starknet-devnet {DEVNET_VERSION} is not installed (not on PATH nor in {cargo_bin}): "
        "run `make setup`",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(devnet: Devnet) -> None:
    deadline = time.monotonic() + _READY_DEADLINE_S
    last_error = ""
    while time.monotonic() < deadline:
        if devnet.process.poll() is not None:
            raise RuntimeError(
                f"starknet-devnet exited with {devnet.process.returncode}: "
                f"{devnet.log_path.read_text()[-2000:]}"
            )
        try:
            if httpx.get(devnet.url + "/is_alive", timeout=1).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last_error = str(exc)
        time.sleep(_POLL_S)  # polling a child process, bounded by the deadline
    raise RuntimeError(
        f"starknet-devnet not ready within {_READY_DEADLINE_S:.0f} s ({last_error}): "
        f"{devnet.log_path.read_text()[-2000:]}"
    )


@contextmanager
def start_devnet(
    tmp_path: Path, seed: int = 0, extra_args: Sequence[str] = (), accounts: int = 3
) -> Iterator[Devnet]:
    binary = devnet_binary()
    port = _free_port()
    log_path = tmp_path / f"devnet-{port}.log"
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
        *extra_args,
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
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
