"""The keeper's own funds, on a real devnet with a real keeper process (issue 21).

An account drained below what a rebalance costs: the job waits with
``insufficient_funds`` (not failed, not parked), no transaction is sent, /healthz is
degraded and says why, one log line; funding the account (devnet_mint) lets the job
resume by itself and execute once; the balance metric follows the balance.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keeper.chain import ChainClient
from keeper.cli import main as cli
from keeper.core.config import ChainConfig, FundsConfig, Secrets
from keeper.engine.funds import FRI_PER_STRK, INSUFFICIENT_FUNDS
from keeper.engine.funds_guard import FundsGuard
from keeper.ops.health import HealthState
from keeper.ops.metrics import KeeperMetrics
from keeper.store.db import open_store
from keeper.store.jobs import JobState, JobStore
from keeper.store.ledger import Ledger
from tests.contracts.conftest import Deployed
from tests.e2e.harness import (
    KeeperSetup,
    epoch,
    executed_events,
    healthz,
    wait_for_epoch,
    wait_for_jobs,
    wait_until,
)
from tests.support.funds import balance_at, drain, mint

pytestmark = pytest.mark.devnet
KEEPER_INDEX = 1  # KeeperSetup's account
SINK_INDEX = 2  # where a drained account's STRK goes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _metric(port: int, name: str) -> float | None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


async def test_a_drained_keeper_waits_sends_nothing_and_resumes_once_funded(
    deployed: Deployed, keeper_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devnet = deployed.devnet
    keeper_address = devnet.accounts[KEEPER_INDEX].address
    left = await drain(
        devnet, deployed.keeper, to=devnet.accounts[SINK_INDEX].address, keep_fri=1000
    )
    assert left < 10**6  # nothing a registration and an execution could be paid with
    nonce = await deployed.keeper.get_nonce()
    port = _free_port()
    setup = KeeperSetup(deployed, keeper_dir, health_port=port)
    keeper = setup.start()
    try:
        # The router's epoch 0 is due at once: the job proves (dev) and then waits.
        async def waiting() -> bool:
            rows = setup.query("SELECT state, failure_code FROM jobs") if setup.job_states() else []
            return any(r["failure_code"] == INSUFFICIENT_FUNDS for r in rows)

        await wait_until("the job waiting for funds", waiting, keeper=keeper)

        async def degraded() -> dict[str, object] | None:
            body = await healthz(port)
            reasons = body["reasons"]
            assert isinstance(reasons, list)
            waits = any(str(r).startswith(INSUFFICIENT_FUNDS) for r in reasons)
            return body if body["status"] == "degraded" and waits else None

        health = await wait_until("/healthz degraded by funds", degraded, keeper=keeper)
        reasons = [str(r) for r in health["reasons"]]  # type: ignore[attr-defined]
        assert any(r.startswith("funds low: account") for r in reasons), reasons
        assert any(f"{keeper_address:#x} holds 0.000000 STRK" in r for r in reasons), reasons
        (job,) = setup.query("SELECT state, run, failure_reason FROM jobs")
        assert job["state"] == "proved" and job["run"] == 1  # not failed, not parked
        assert "top up the account" in job["failure_reason"]
        assert await _metric(port, "keeper_jobs_waiting_for_funds") == 1.0
        assert await _metric(port, "keeper_account_balance_strk") == left / FRI_PER_STRK
        # Nothing was sent, nothing paid.
        assert await deployed.keeper.get_nonce() == nonce
        assert setup.query("SELECT 1 FROM costs WHERE fee_amount IS NOT NULL") == []
        assert await epoch(deployed) == 0

        mint(devnet, keeper_address, 50 * FRI_PER_STRK)
        await wait_for_epoch(deployed, 1, keeper)
        await wait_for_jobs(setup, {"confirmed"}, keeper)

        async def metric_follows() -> bool:
            on_chain = await balance_at(devnet.url, keeper_address)
            return await _metric(port, "keeper_account_balance_strk") == on_chain / FRI_PER_STRK

        await wait_until("the balance metric at the chain's balance", metric_follows, keeper=keeper)
        assert await _metric(port, "keeper_jobs_waiting_for_funds") == 0.0
        after = await healthz(port)
    finally:
        assert keeper.stop() == 0
    assert not any(INSUFFICIENT_FUNDS in str(r) for r in after["reasons"])  # type: ignore[attr-defined]
    assert len(await executed_events(deployed)) == 1  # executed once
    (job,) = setup.query("SELECT state, run, failure_code FROM jobs")
    assert (job["state"], job["run"], job["failure_code"]) == ("confirmed", 1, None)
    kinds = [r["kind"] for r in setup.query("SELECT kind FROM costs WHERE fee_amount IS NOT NULL")]
    assert sorted(kinds) == ["execution", "fact_registration"]  # each paid once
    assert len(keeper.events("job.waiting_for_funds")) == 1  # one log line, however long
    assert len(keeper.events("job.funds_available")) == 1
    assert keeper.events("funds.low") and keeper.events("funds.ok")
    # The registration and the execution were estimated together, in order, on the chain.
    assert not keeper.events("funds.execution_not_simulated")

    # `status` shows the balance and what it pays for at the ledger's cost per allocation.
    capsys.readouterr()
    status = ["status", "--config", str(setup.config_path)]
    assert await asyncio.to_thread(cli.main, [*status, "--json"]) == 0  # it runs its own loop
    funds = json.loads(capsys.readouterr().out.splitlines()[-1])["funds"]
    balance = await balance_at(devnet.url, keeper_address)
    paid = setup.query("SELECT fee_amount FROM costs WHERE fee_amount IS NOT NULL")
    cost = sum(int(r["fee_amount"]) for r in paid)  # the one executed allocation
    assert (funds["balance_fri"], funds["cost_source"]) == (str(balance), "ledger")
    assert funds["cost_per_allocation_fri"] == str(cost)
    assert funds["rebalances_funded"] == balance // cost and funds["low"] is False
    assert await asyncio.to_thread(cli.main, status) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("funds:")]
    assert f"in {keeper_address:#x}: {balance // cost} rebalance(s) at" in line
    print(line)  # the example in docs/operations.md


async def test_the_guard_reads_the_balance_and_costs_what_it_pays_for(
    deployed: Deployed, tmp_path: Path
) -> None:
    """FundsGuard against the devnet: the balance, the rebalances it pays at the default
    cost, /healthz's reason below the minimum and gone once funded."""
    devnet = deployed.devnet
    account = devnet.accounts[KEEPER_INDEX]
    cfg = ChainConfig(
        rpc_url=devnet.url,
        chain_id=hex(deployed.deployment.chain_id),
        router_address=hex(deployed.router_address),
        risk_engine_address=hex(deployed.risk_engine_address),
        account_address=hex(account.address),
    )
    from starknet_py.net.signer.key_pair import KeyPair

    chain = ChainClient(cfg, Secrets(), key_pair=KeyPair.from_private_key(account.private_key))
    store = open_store(tmp_path / "k.sqlite3")
    health, metrics = HealthState(), KeeperMetrics()
    guard = FundsGuard(
        chain=chain,
        jobs=JobStore(store),
        ledger=Ledger(store),
        config=FundsConfig(min_rebalances=10, default_cost_per_allocation_fri=FRI_PER_STRK),
        margin=1.5,
        metrics=metrics,
        health=health,
    )
    balance = await balance_at(devnet.url, account.address)
    status = await guard.refresh()
    assert status is not None and status.balance_fri == balance
    assert status.rebalances == balance // FRI_PER_STRK and status.figure.source == "default"
    assert health.funds_low is None and health.funds is not None

    left = await drain(devnet, deployed.keeper, to=devnet.accounts[SINK_INDEX].address,
                       keep_fri=3 * FRI_PER_STRK)
    assert await guard.maybe_refresh() is status  # not due, no fee of ours: not read again
    status = await guard.refresh()
    assert status is not None and status.balance_fri == left and status.rebalances == 3
    assert health.funds_low is not None and "pays for 3 rebalance(s)" in health.funds_low
    mint(devnet, account.address, 100 * FRI_PER_STRK)
    status = await guard.refresh()
    assert status is not None and not status.low and health.funds_low is None

    # The gate of a job with only its execution left (an Atlantic job, or a fact found
    # registered). This one's execution cannot be simulated (no output the router takes):
    # it is costed at the ledger's figure, here the default, times the margin.
    jobs = JobStore(store)
    created = jobs.create(deployed.router_address, 0, "interval")
    assert created is not None
    job = jobs.advance(created, JobState.TRACED, output_json="[]")
    await drain(devnet, deployed.keeper, to=devnet.accounts[SINK_INDEX].address, keep_fri=1000)
    reason = await guard.hold(job, [], 0x1234)
    assert reason is not None and reason.startswith(INSUFFICIENT_FUNDS)
    assert "needs 1.500000 STRK for its 1 remaining transaction(s)" in reason
    waiting = jobs.require(job.id)
    assert (waiting.state, waiting.failure_code) == (JobState.TRACED, INSUFFICIENT_FUNDS)
    assert health.funds_waiting == reason == waiting.failure_reason
    assert await guard.hold(waiting, [], 0x1234) == reason  # still short: the same words
    mint(devnet, account.address, 100 * FRI_PER_STRK)
    assert await guard.hold(jobs.require(job.id), [], 0x1234) is None
    resumed = jobs.require(job.id)
    assert resumed.failure_code is None and health.funds_waiting is None
