"""A keeper run as its own process against a devnet: its config, its start, its log, its stop.

Shared by ``obsqra-keeper demo``, bench/ and the end-to-end tests, so that all of them
run the keeper exactly the way an operator would: ``python -m keeper run --config``, the
account key in a file named by ``KEEPER_ACCOUNT_PRIVATE_KEY_FILE``, JSON log lines.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.core.errors import KeeperError
from keeper.devnet.node import stop_process_group

TomlValue = str | int | float | bool | Path
_LOG_TAIL_CHARS = 4000
_STOP_TIMEOUT_S = 60.0


class KeeperProcessError(KeeperError):
    code = "keeper_process"


def to_toml(sections: Mapping[str, Mapping[str, TomlValue | None]]) -> str:
    """Tables of scalars as TOML (``None`` values are left out)."""
    out: list[str] = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        out += [f"{key} = {_toml_value(v)}" for key, v in values.items() if v is not None]
        out.append("")
    return "\n".join(out)


def _toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


@dataclass(frozen=True)
class KeeperConfigSpec:
    """What differs between the keepers a devnet run starts; the rest is fixed for speed
    (fast polling, JSON logs)."""

    rpc_url: str
    chain_id: int
    router: int
    risk_engine: int
    account: int
    work_dir: Path
    policy: str = "dev"
    stone_prover: Path | None = None
    stone_verifier: Path | None = None
    health_port: int | None = None  # None: no health server
    stall_deadline_s: float | None = None

    def sections(self) -> dict[str, dict[str, TomlValue | None]]:
        return {
            "chain": {
                "rpc_url": self.rpc_url,
                "chain_id": f"{self.chain_id:#x}",
                "router_address": f"{self.router:#x}",
                "risk_engine_address": f"{self.risk_engine:#x}",
                "account_address": f"{self.account:#x}",
                "receipt_timeout_s": 30,
            },
            "stream": {
                "source": "rpc",
                "poll_interval_s": 0.2,
                "confirmation_depth": 0,
                "stall_deadline_s": self.stall_deadline_s,
            },
            "prover": {
                "policy": self.policy,
                "work_dir": self.work_dir / "work",
                "stone_prover_path": self.stone_prover,
                "stone_verifier_path": self.stone_verifier,
            },
            "store": {"path": self.store_path},
            "log": {"level": "info", "format": "json"},
            "health": {"enabled": self.health_port is not None, "port": self.health_port},
        }

    @property
    def store_path(self) -> Path:
        return self.work_dir / "keeper.sqlite3"

    def toml(self) -> str:
        return to_toml(self.sections())


class LogFollower:
    """Reads the complete JSON lines appended to a log file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        text = chunk[: end + 1].decode("utf-8", "replace")
        return [_parse_line(raw) for raw in text.splitlines()]

    def all_lines(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [_parse_line(raw) for raw in text.splitlines()]

    def tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        try:
            return self.path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _parse_line(raw: str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"event": "raw", "text": raw}
    return parsed if isinstance(parsed, dict) else {"event": "raw", "text": raw}


@dataclass
class KeeperProcess:
    process: subprocess.Popen[bytes]
    log: LogFollower

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.log.path

    def log_lines(self) -> list[dict[str, Any]]:
        return self.log.all_lines()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == name]

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> int:
        """SIGTERM the keeper (not its group: it stops its own children), wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_process_group(self.process, grace_s=5.0)
            raise KeeperProcessError(
                f"the keeper did not stop within {timeout_s:.0f} s of SIGTERM"
            ) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def start_keeper(
    config_path: Path,
    key_path: Path,
    log_path: Path,
    environ: Mapping[str, str],
    *,
    extra_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> KeeperProcess:
    """``python -m keeper run`` in its own process group, logs to ``log_path``.

    ``environ``'s ``KEEPER_*`` variables are dropped (the config file is the whole
    configuration); ``extra_env`` is added after that, on purpose."""
    env = {k: v for k, v in environ.items() if not k.startswith("KEEPER_")}
    env.update(extra_env or {})
    env["KEEPER_ACCOUNT_PRIVATE_KEY_FILE"] = str(key_path)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "keeper", "run", "--config", str(config_path)],
            env=env,
            cwd=cwd or config_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return KeeperProcess(process, LogFollower(log_path))
