"""RpcSource against a real starknet-devnet with the deployed contracts: events of real
transactions, a restart mid-stream, and a reorg made with devnet_abortBlocks."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlite_utils

from keeper.chain.codec import encode_short_string
from keeper.devnet import deploy as devnet_deploy
from keeper.store.db import open_store
from keeper.stream import rpc_source
from keeper.stream.eventlog import EventLog
from keeper.stream.events import (
    GovernanceChangeApplied,
    GovernanceChangeCancelled,
    GovernanceChangeProposed,
    GovernanceParamsUpdated,
    KeeperUpdated,
    MetricsUpdated,
    OracleUpdated,
    OwnershipTransferred,
    OwnershipTransferStarted,
    RebalanceRequested,
)
from keeper.stream.rpc_source import PollResult, RpcSource
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_PARAMS = ROOT / "config" / "deploy.devnet.toml"


@dataclass
class Chain:
    devnet: Devnet
    deployment: devnet_deploy.Deployment

    @property
    def addresses(self) -> dict[int, Any]:
        return {
            self.deployment.address("StrategyRouterV2"): "router",
            self.deployment.address("RiskEngine"): "risk_engine",
        }

    def account(self, index: int) -> Any:
        acc = devnet_deploy.predeployed_accounts(self.devnet.url)[index]
        return devnet_deploy.make_account(self.devnet.url, acc, self.deployment.chain_id)

    async def request_rebalance(self, account: int = 1) -> int:
        """One RebalanceRequested (1 = the keeper, 0 = the owner); returns the tx hash."""
        router = self.deployment.address("StrategyRouterV2")
        call = devnet_deploy.make_call(router, "request_rebalance")
        return await devnet_deploy.invoke(self.account(account), [call])

    def node_events(self, from_block: int) -> list[tuple[int, int, int]]:
        """(block, tx, event_index) of every event of both contracts, straight from the node."""
        out: list[tuple[int, int, int]] = []
        token = None
        while True:
            flt: dict[str, Any] = {
                "from_block": {"block_number": from_block},
                "to_block": "latest",
                "address": [hex(a) for a in self.addresses],
                "chunk_size": 100,
            }
            if token:
                flt["continuation_token"] = token
            page = self.devnet.rpc("starknet_getEvents", {"filter": flt})
            out += [
                (e["block_number"], int(e["transaction_hash"], 16), e["event_index"])
                for e in page["events"]
            ]
            token = page.get("continuation_token")
            if not token:
                return out


@pytest.fixture
async def chain(
    devnet: Devnet, contract_artifacts: dict[str, devnet_deploy.ContractArtifact]
) -> Chain:
    params = devnet_deploy.load_deploy_params(DEPLOY_PARAMS)
    program_hash, child_hash = devnet_deploy.default_program_hashes()
    deployment, _ = await devnet_deploy.deploy_devnet(
        devnet.url,
        params,
        contract_artifacts,
        None,
        program_hash=program_hash,
        child_program_hash=child_hash,
        salt=secrets.randbits(200),
    )
    return Chain(devnet, deployment)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


def new_source(log: EventLog, chain: Chain, client: httpx.AsyncClient, **kw: Any) -> RpcSource:
    return RpcSource(
        log,
        rpc_url=chain.devnet.url,
        addresses=chain.addresses,
        start_block=chain.deployment.block_number,
        client=client,
        **kw,
    )


async def catch_up(src: RpcSource) -> PollResult:
    while True:
        result = await src.poll_once()
        if result.to_block is None or result.to_block >= result.head:
            return result


def stored_ids(log: EventLog) -> list[tuple[int, int, int]]:
    return [
        (s.event.meta.block_number, s.event.meta.tx_hash, s.event.meta.event_index)
        for s in log.next_unprocessed(10_000)
    ]


async def test_events_of_real_transactions_are_decoded_in_chain_order(
    tmp_path: Path, chain: Chain, client: httpx.AsyncClient
) -> None:
    with open_store(tmp_path / "keeper.sqlite3") as store:
        log = EventLog(store, source="rpc", addresses=chain.addresses)
        src = new_source(log, chain, client, chunk_size=2)
        await catch_up(src)
        events = [s.event for s in log.next_unprocessed(10_000)]
        # The router's constructor emitted its whole configuration; the oracle its metrics.
        assert {GovernanceParamsUpdated, KeeperUpdated, MetricsUpdated} <= {type(e) for e in events}
        updates = [e for e in events if isinstance(e, GovernanceParamsUpdated)]
        params = [e.param for e in updates if e.contract == "router"]
        assert params[0] == "rebalance_interval_s" and len(params) == 18
        pin = {e.param: e.new_value for e in updates if e.contract == "router"}
        assert pin["direct_memory_verification"] == encode_short_string("strict")
        tx_hash = await chain.request_rebalance()
        result = await catch_up(src)
        assert result.head == chain.devnet.block_number()
        last = log.next_unprocessed(10_000)[-1].event
        assert isinstance(last, RebalanceRequested)
        assert last.meta.tx_hash == tx_hash
        assert last.requester == devnet_deploy.predeployed_accounts(chain.devnet.url)[1].address
        assert last.by_owner is False  # a keeper's request is a signal only
        assert stored_ids(log) == chain.node_events(chain.deployment.block_number)
        assert log.status().quarantined == 0


async def test_governance_and_ownership_events_are_decoded(
    tmp_path: Path, chain: Chain, client: httpx.AsyncClient
) -> None:
    router = chain.deployment.address("StrategyRouterV2")
    outsider = devnet_deploy.predeployed_accounts(chain.devnet.url)[2].address
    param = [encode_short_string("max_single_bps"), 0]
    drift = [encode_short_string("drift_threshold_bps"), 0]
    calls = [
        devnet_deploy.make_call(router, "propose_change", [*param, 1, 4000]),
        devnet_deploy.make_call(router, "apply_change", param),
        devnet_deploy.make_call(router, "propose_change", [*drift, 1, 100]),
        devnet_deploy.make_call(router, "cancel_change", drift),
        devnet_deploy.make_call(router, "request_rebalance"),
        devnet_deploy.make_call(router, "propose_change", [*drift, 1, 200]),  # left pending
        devnet_deploy.make_call(router, "transfer_ownership", [outsider]),
    ]
    risk_engine = chain.deployment.address("RiskEngine")
    oracle = [encode_short_string("oracle"), 0]
    risk_calls = [
        devnet_deploy.make_call(risk_engine, "propose_change", [*oracle, 1, outsider]),
        devnet_deploy.make_call(risk_engine, "apply_change", oracle),
    ]
    with open_store(tmp_path / "keeper.sqlite3") as store:
        log = EventLog(store, source="rpc", addresses=chain.addresses)
        src = new_source(log, chain, client)
        await catch_up(src)
        before = len(log.next_unprocessed(10_000))
        await devnet_deploy.invoke(chain.account(0), calls)
        accept = devnet_deploy.make_call(router, "accept_ownership")
        await devnet_deploy.invoke(chain.account(2), [accept])
        await devnet_deploy.invoke(chain.account(0), risk_calls)
        await catch_up(src)
        events = [s.event for s in log.next_unprocessed(10_000)][before:]
        assert log.status().quarantined == 0
    assert [type(e) for e in events] == [
        GovernanceChangeProposed,
        GovernanceChangeApplied,
        GovernanceParamsUpdated,
        GovernanceChangeProposed,
        GovernanceChangeCancelled,
        RebalanceRequested,
        GovernanceChangeProposed,
        OwnershipTransferStarted,
        OwnershipTransferred,
        GovernanceChangeCancelled,  # the new owner does not inherit the pending proposal
        GovernanceChangeProposed,
        GovernanceChangeApplied,
        OracleUpdated,
    ]
    (
        proposed, applied, updated, _, cancelled, requested, _, started, transferred,
        inherited, risk_proposed, risk_applied, oracle_updated,
    ) = events
    assert isinstance(proposed, GovernanceChangeProposed)
    assert (proposed.param, proposed.subject, proposed.values) == ("max_single_bps", 0, (4000,))
    assert isinstance(applied, GovernanceChangeApplied) and applied.eta == proposed.eta
    assert isinstance(updated, GovernanceParamsUpdated)
    assert (updated.param, updated.old_value, updated.new_value) == ("max_single_bps", 5000, 4000)
    assert isinstance(cancelled, GovernanceChangeCancelled) and cancelled.values == (100,)
    assert isinstance(requested, RebalanceRequested) and requested.by_owner is True
    owner = devnet_deploy.predeployed_accounts(chain.devnet.url)[0].address
    assert isinstance(started, OwnershipTransferStarted)
    assert (started.contract, started.previous_owner, started.new_owner) == (
        "router", owner, outsider
    )
    assert isinstance(transferred, OwnershipTransferred)
    assert (transferred.previous_owner, transferred.new_owner) == (owner, outsider)
    assert isinstance(inherited, GovernanceChangeCancelled)
    assert (inherited.contract, inherited.param, inherited.values) == (
        "router", "drift_threshold_bps", (200,)
    )
    assert isinstance(risk_proposed, GovernanceChangeProposed)
    assert isinstance(risk_applied, GovernanceChangeApplied)
    for event in (risk_proposed, risk_applied):
        assert (event.contract, event.param, event.values) == ("risk_engine", "oracle", (outsider,))
    assert isinstance(oracle_updated, OracleUpdated)
    assert (oracle_updated.old_oracle, oracle_updated.new_oracle) == (owner, outsider)


class _CrashAfter(httpx.AsyncBaseTransport):
    """Forwards to the node until ``calls`` getEvents pages were served, then fails."""

    def __init__(self, calls: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._left = calls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"starknet_getEvents" in request.content:
            if self._left == 0:
                raise httpx.ConnectError("keeper killed mid-range")
            self._left -= 1
        return await self._inner.handle_async_request(request)


async def test_restart_mid_stream_resumes_without_gaps_or_duplicates(
    tmp_path: Path, chain: Chain, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(4):
        await chain.request_rebalance()
    expected = chain.node_events(chain.deployment.block_number)
    monkeypatch.setattr(rpc_source, "_MAX_RANGE", 2)  # several commits along the way
    path = tmp_path / "keeper.sqlite3"
    with open_store(path) as store:
        log = EventLog(store, source="rpc", addresses=chain.addresses)
        # One event per page: dying before the last page leaves the last event unread.
        async with httpx.AsyncClient(transport=_CrashAfter(len(expected) - 1)) as dying:
            src = new_source(log, chain, dying, chunk_size=1)
            with pytest.raises(httpx.ConnectError):
                while True:
                    await src.poll_once()
        partial = stored_ids(log)
        assert partial == expected[: len(partial)]
        assert 0 < len(partial) < len(expected)
    with open_store(path) as store:  # the restarted keeper
        log = EventLog(store, source="rpc", addresses=chain.addresses)
        await catch_up(new_source(log, chain, client, chunk_size=1))
        assert stored_ids(log) == expected


async def test_abort_blocks_reorg_is_rolled_back(
    tmp_path: Path, chain: Chain, client: httpx.AsyncClient
) -> None:
    with open_store(tmp_path / "keeper.sqlite3") as store:
        rolled_back: list[int] = []

        def hook(db: sqlite_utils.Database, after_block: int) -> None:
            rolled_back.append(after_block)

        log = EventLog(store, source="rpc", addresses=chain.addresses, on_rollback=hook)
        src = new_source(log, chain, client)
        orphan_tx = await chain.request_rebalance()
        orphan_block = chain.devnet.block_number()
        await catch_up(src)
        assert stored_ids(log)[-1][1] == orphan_tx

        chain.devnet.abort_blocks({"block_number": orphan_block})
        # devnet 0.8.2's block hash does not commit to the transactions: a replacement
        # block with the same parent and timestamp gets the very same hash. Moving the
        # clock (this also mines an empty block) makes the fork visible, as it always is
        # on Starknet, whose block hash commits to transactions and events.
        chain.devnet.increase_time(60)
        new_tx = await chain.request_rebalance(account=0)  # another sender: another tx hash
        result = await src.poll_once()

        assert result.rolled_back_to is not None and result.rolled_back_to < orphan_block
        assert rolled_back == [result.rolled_back_to]
        await catch_up(src)
        txs = [tx for _, tx, _ in stored_ids(log)]
        assert orphan_tx not in txs
        assert txs[-1] == new_tx
        assert stored_ids(log) == chain.node_events(chain.deployment.block_number)


async def test_new_heads_over_websocket_trigger_polls(
    tmp_path: Path, chain: Chain, client: httpx.AsyncClient
) -> None:
    """With a 10-minute poll interval only the WebSocket notification can bring the
    event in within the test's deadline."""
    polled = asyncio.Event()

    def on_progress(what: str) -> None:
        if what == "poll":
            polled.set()

    async def next_poll(timeout_s: float) -> bool:
        polled.clear()
        try:
            await asyncio.wait_for(polled.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    with open_store(tmp_path / "keeper.sqlite3") as store:
        log = EventLog(store, source="rpc", addresses=chain.addresses)
        ws_url = chain.devnet.url.replace("http://", "ws://") + "/ws"
        src = new_source(
            log, chain, client, poll_interval_s=600, ws_url=ws_url, on_progress=on_progress
        )
        task = asyncio.create_task(src.run())
        try:
            assert await next_poll(30)
            # Until the subscription is live a new block wakes nobody: retry a few blocks.
            for _ in range(20):
                chain.devnet.create_block()
                if await next_poll(1):
                    break
            else:
                pytest.fail("no poll was triggered by new blocks over the WebSocket")
            tx_hash = await chain.request_rebalance()
            for _ in range(5):
                if stored_ids(log) and stored_ids(log)[-1][1] == tx_hash:
                    break
                assert await next_poll(30)
            assert stored_ids(log)[-1][1] == tx_hash
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
