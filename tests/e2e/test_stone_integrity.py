"""The real path, end to end, where a real Stone is installed (marker ``stone``): a keeper
with the stone policy on a devnet whose router trusts our IntegrityGuard over Integrity's
real CairoVerifier runs three epochs. Each: the model traced on the on-chain inputs,
proved by Stone, pre-checked by swiftness, verified by Integrity's verifier through the
guard's split transactions (the registrar), then executed by the router under the pinned
verifier configuration.

Skipped, with the reason, when Stone is not configured (``prover.stone.locate_stone``:
KEEPER_PROVER__STONE_PROVER_PATH/…_VERIFIER_PATH or cpu_air_prover/cpu_air_verifier on
PATH) or Integrity's compiled classes are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prover import model
from prover.stone import locate_stone
from tests.contracts.conftest import Deployed
from tests.e2e.harness import (
    KeeperSetup,
    executed_events,
    wait_for_epoch,
    wait_for_jobs,
)

pytestmark = [pytest.mark.devnet, pytest.mark.stone]

EPOCHS = 3
STONE_DEADLINE_S = 1800.0  # a real proof of the allocation trace, three times


@pytest.fixture
def stone_env() -> dict[str, str]:
    """Stone's binaries for the keeper; asked for first, so a machine without Stone skips
    before anything is deployed."""
    found = locate_stone(os.environ)
    if found is None:
        pytest.skip(
            "real Stone not configured: put cpu_air_prover and cpu_air_verifier on PATH or "
            "set KEEPER_PROVER__STONE_PROVER_PATH and KEEPER_PROVER__STONE_VERIFIER_PATH"
        )
    prover, verifier = found
    return {
        "KEEPER_PROVER__STONE_PROVER_PATH": str(prover),
        "KEEPER_PROVER__STONE_VERIFIER_PATH": str(verifier),
    }


async def test_three_epochs_through_stone_and_integrity(
    stone_env: dict[str, str], deployed_with_integrity: Deployed, keeper_dir: Path
) -> None:
    deployed = deployed_with_integrity
    gov = await deployed.view("StrategyRouterV2", "get_governance_params")
    assert gov["fact_registry"] == deployed.deployment.address("IntegrityGuard")
    setup = KeeperSetup(deployed, keeper_dir, policy="stone_only", extra_env=stone_env)
    keeper = setup.start()
    try:
        for target in range(1, EPOCHS + 1):
            if target > 1:  # epoch 0 starts on its own: a fresh router has no allocation
                snapshot = await deployed.metrics()
                snapshot[target % len(snapshot)]["apy_bps"] += 250 * target
                await deployed.set_metrics(snapshot)
                await deployed.invoke(deployed.owner, "StrategyRouterV2", "request_rebalance")
            inputs = await deployed.allocation_inputs()
            await wait_for_epoch(deployed, target, keeper, deadline_s=STONE_DEADLINE_S)
            allocation = [int(a) for a in await deployed.view("StrategyRouterV2", "get_allocation")]
            assert allocation == list(model.compute_allocation(inputs).allocation)
        await wait_for_jobs(setup, {"confirmed"}, keeper)
    finally:
        assert keeper.stop() == 0
    jobs = setup.query(
        "SELECT id, epoch, state, prover, verification_hash FROM jobs ORDER BY epoch"
    )
    assert [(j["epoch"], j["state"], j["prover"]) for j in jobs] == [
        (e, "confirmed", "stone") for e in range(EPOCHS)
    ]
    assert all(j["verification_hash"] for j in jobs)
    assert len(await executed_events(deployed)) == EPOCHS
    for job in jobs:
        paid = setup.query(
            "SELECT kind, fee_amount FROM costs WHERE job_id = ? AND outcome = 'ok' "
            "AND fee_amount IS NOT NULL",
            (job["id"],),
        )
        kinds = [p["kind"] for p in paid]
        # Integrity's split flow: at least initial and final, then the execution.
        assert kinds.count("fact_registration") >= 2 and kinds.count("execution") == 1
        assert all(int(p["fee_amount"]) > 0 for p in paid)
