"""Drive a real keeper process against a real devnet: config, start, wait, stop, inspect.

Waiting is on observable outcomes (the router's epoch, a process exit, a log line),
polled with a deadline; a test that waits too long fails with what it saw.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeper.devnet.process import KeeperConfigSpec, KeeperProcess, start_keeper
from tests.contracts.conftest import Deployed
from tests.support.processes import live_processes

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 180.0


FAKE_STONE = ROOT / "tests" / "fakes" / "stone"


def stone_stand_in_env() -> dict[str, str]:
    """Point the keeper's Stone at the stand-in pair (tests/fakes/stone)."""
    return {
        "KEEPER_PROVER__STONE_PROVER_PATH": str(FAKE_STONE / "cpu_air_prover"),
        "KEEPER_PROVER__STONE_VERIFIER_PATH": str(FAKE_STONE / "cpu_air_verifier"),
    }


@dataclass
class KeeperSetup:
    """One keeper's config, secrets and store against one deployment."""

    deployed: Deployed
    dir: Path
    account_index: int = 1
    policy: str = "dev"
    extra_env: dict[str, str] = field(default_factory=dict)
    health_port: int | None = None  # None: the health server is off

    @property
    def store_path(self) -> Path:
        return self.spec().store_path

    @property
    def config_path(self) -> Path:
        return self.dir / "keeper.toml"

    def spec(self) -> KeeperConfigSpec:
        devnet = self.deployed.devnet
        return KeeperConfigSpec(
            rpc_url=devnet.url,
            chain_id=self.deployed.deployment.chain_id,
            router=self.deployed.router_address,
            risk_engine=self.deployed.risk_engine_address,
            account=devnet.accounts[self.account_index].address,
            work_dir=self.dir,
            policy=self.policy,
            health_port=self.health_port,
            stall_deadline_s=120,
        )

    def write(self) -> Path:
        """The config file and the account key file (returned)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        key = self.dir / "account_private_key"
        key.write_text(hex(self.deployed.devnet.accounts[self.account_index].private_key))
        key.chmod(0o600)
        self.config_path.write_text(self.spec().toml())
        return key

    def start(self, **env: str) -> KeeperProcess:
        key = self.write()
        log_path = self.dir / f"keeper-{time.monotonic_ns()}.log"
        return start_keeper(
            self.config_path,
            key,
            log_path,
            os.environ,
            extra_env={**self.extra_env, **env},
            cwd=ROOT,
        )

    def job_states(self) -> list[str]:
        """The jobs' states, oldest first; none before the keeper created its store."""
        if not self.store_path.exists():
            return []
        try:
            rows = self.query("SELECT state FROM jobs ORDER BY created_at")
        except sqlite3.OperationalError as exc:  # the keeper has not migrated it yet
            if "no such table" not in str(exc):
                raise
            return []
        return [str(r["state"]) for r in rows]

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.store_path, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()


async def wait_until(
    what: str,
    check: Callable[[], Awaitable[Any]],
    *,
    keeper: KeeperProcess | None = None,
    deadline_s: float = DEADLINE_S,
) -> Any:
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        last = await check()
        if last:
            return last
        if keeper is not None and keeper.process.poll() is not None:
            tail = keeper.log.tail()
            raise AssertionError(
                f"keeper exited ({keeper.process.returncode}) while waiting for {what}:\n{tail}"
            )
        await asyncio.sleep(0.2)
    tail = "" if keeper is None else keeper.log.tail()
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{tail}")


async def epoch(deployed: Deployed) -> int:
    return int(await deployed.view("StrategyRouterV2", "get_epoch"))


async def wait_for_epoch(
    deployed: Deployed, target: int, keeper: KeeperProcess, *, deadline_s: float = DEADLINE_S
) -> None:
    async def reached() -> bool:
        return await epoch(deployed) >= target

    await wait_until(f"router epoch {target}", reached, keeper=keeper, deadline_s=deadline_s)


async def executed_events(deployed: Deployed) -> list[Any]:
    """Every AllocationExecuted of the router, from the node's own event index."""
    from starknet_py.hash.selector import get_selector_from_name

    chunk = await deployed.client.get_events(
        address=deployed.router_address,
        keys=[[get_selector_from_name("AllocationExecuted")]],
        from_block_number=0,
        to_block_number="latest",
        chunk_size=1000,
    )
    return list(chunk.events)


async def wait_for_jobs(setup: KeeperSetup, states: set[str], keeper: KeeperProcess) -> None:
    """Until every job of the keeper's store is in one of ``states`` (the chain may move
    before the keeper has read the receipt)."""

    async def settled() -> bool:
        found = setup.job_states()
        return bool(found) and all(state in states for state in found)

    await wait_until(f"jobs in {sorted(states)}", settled, keeper=keeper)


async def fact_registered_events(deployed: Deployed) -> list[Any]:
    """Every FactRegistered of the deployment's DevFactRegistry, from the node's own event
    index (keys[1] is the fact hash; a repeated registration emits it again)."""
    from starknet_py.hash.selector import get_selector_from_name

    chunk = await deployed.client.get_events(
        address=deployed.registry_address,
        keys=[[get_selector_from_name("FactRegistered")]],
        from_block_number=0,
        to_block_number="latest",
        chunk_size=1000,
    )
    return list(chunk.events)


async def healthz(port: int) -> dict[str, Any]:
    """The keeper's /healthz body (the health server of ``KeeperSetup(health_port=...)``)."""
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as http:
        reply = await http.get(f"http://127.0.0.1:{port}/healthz")
    body: dict[str, Any] = reply.json()
    return body



def stone_provers(work_dir: Path) -> dict[int, int]:
    """Live ``cpu_air_prover`` processes proving under ``work_dir``: pid -> parent pid."""
    return live_processes("cpu_air_prover", argument_contains=str(work_dir))
