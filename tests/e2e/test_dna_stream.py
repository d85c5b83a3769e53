"""The keeper following the contracts through an Apibara DNA v2 stream, end to end: a real
keeper process, a real devnet, and a DNA v2 server (tests/fakes/dna_devnet.py) serving
the devnet's blocks as ``dna.v2.stream`` data with a bearer token. The keeper runs its
whole loop (detected → executed) with ``stream.source = "dna"``, and a reorg made with
``devnet_abortBlocks`` reaches it as an ``Invalidate`` and is rolled back."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.devnet.node import free_port
from tests.contracts.conftest import Deployed
from tests.e2e.harness import (
    KeeperSetup,
    executed_events,
    healthz,
    wait_for_epoch,
    wait_for_jobs,
    wait_until,
)
from tests.fakes.dna_devnet import DevnetDnaServer

pytestmark = pytest.mark.devnet

TOKEN = "e2e-dna-token-0123456789"


async def test_the_keeper_runs_on_a_dna_stream_and_rolls_back_a_reorg(
    deployed: Deployed, keeper_dir: Path
) -> None:
    keeper_dir.mkdir(parents=True)
    token_file = keeper_dir / "dna_token"
    token_file.write_text(TOKEN)
    async with DevnetDnaServer(deployed.devnet.url, token=TOKEN) as dna:
        setup = KeeperSetup(
            deployed,
            keeper_dir,
            health_port=free_port(),
            extra_env={
                "KEEPER_STREAM__SOURCE": "dna",
                "KEEPER_STREAM__DNA_URL": dna.url,
                "KEEPER_STREAM__DNA_HEARTBEAT_INTERVAL_S": "10",
                "KEEPER_DNA_TOKEN_FILE": str(token_file),
            },
        )
        keeper = setup.start()
        try:
            # A fresh router has no allocation: epoch 0 is rebalanced from the stream.
            await wait_for_epoch(deployed, 1, keeper)
            await deployed.change("drift_threshold_bps", [9999])  # only requests trigger

            # An event in a block that devnet then aborts: stored, then rolled back.
            snapshot = await deployed.metrics()
            snapshot[1] = {**snapshot[1], "apy_bps": snapshot[1]["apy_bps"] + 1}
            orphan = await deployed.set_metrics(snapshot)
            orphan_tx = hex(orphan.transaction_hash)

            def stored(tx: str) -> bool:
                rows = setup.query("SELECT 1 FROM stream_events WHERE tx_hash = ?", (tx,))
                return bool(rows)

            async def orphan_stored() -> bool:
                return stored(orphan_tx)

            await wait_until("the orphan block's event in the store", orphan_stored, keeper=keeper)
            deployed.devnet.abort_blocks({"block_number": orphan.block_number})
            # devnet's block hash does not commit to transactions: move the clock so the
            # replacement block differs, as it always does on Starknet.
            deployed.devnet.increase_time(60)

            async def orphan_gone() -> bool:
                return not stored(orphan_tx)

            await wait_until("the Invalidate rolled the event back", orphan_gone, keeper=keeper)
            assert dna.servicer.invalidated
            assert min(dna.servicer.invalidated) < orphan.block_number

            # The request is detected through the stream and executed.
            await deployed.invoke(deployed.owner, "StrategyRouterV2", "request_rebalance")
            await wait_for_epoch(deployed, 2, keeper)
            await wait_for_jobs(setup, {"confirmed"}, keeper)
            assert setup.health_port is not None
            health = await healthz(setup.health_port)
        finally:
            assert keeper.stop() == 0
    jobs = setup.query("SELECT epoch, state, trigger FROM jobs ORDER BY epoch")
    assert [(j["epoch"], j["state"]) for j in jobs] == [(0, "confirmed"), (1, "confirmed")]
    assert jobs[1]["trigger"] == "request"
    assert len(await executed_events(deployed)) == 2
    [cursor] = setup.query("SELECT source, block_number FROM stream_cursor")
    assert cursor["source"] == "dna"
    assert health["stream"]["source"] == "dna"
    assert health["stream"]["cursor"] is not None
    assert all(r.HasField("heartbeat_interval") for r in dna.servicer.requests)
    lines = keeper.log_lines()
    assert any(line.get("event") == "stream.invalidate" for line in lines)
    assert not any(TOKEN in str(line) for line in lines)


async def test_a_refused_token_stops_the_keeper_with_78_and_one_line(
    deployed: Deployed, keeper_dir: Path
) -> None:
    keeper_dir.mkdir(parents=True)
    token_file = keeper_dir / "dna_token"
    token_file.write_text("not-the-right-token-42")
    async with DevnetDnaServer(deployed.devnet.url, token=TOKEN) as dna:
        setup = KeeperSetup(
            deployed,
            keeper_dir,
            extra_env={
                "KEEPER_STREAM__SOURCE": "dna",
                "KEEPER_STREAM__DNA_URL": dna.url,
                "KEEPER_DNA_TOKEN_FILE": str(token_file),
            },
        )
        keeper = setup.start()

        async def exited() -> bool:
            return keeper.process.poll() is not None

        await wait_until("the keeper to exit", exited)
    assert keeper.process.returncode == 78
    [fatal] = keeper.events("keeper.fatal")
    assert fatal["code"] == "stream_unauthorized"
    assert "UNAUTHENTICATED" in fatal["error"] and "KEEPER_DNA_TOKEN_FILE" in fatal["error"]
    assert "not-the-right-token-42" not in keeper.log.tail(100_000)
    assert dna.servicer.requests == []  # refused before any request was accepted
