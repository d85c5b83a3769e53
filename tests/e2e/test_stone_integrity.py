"""The real path, end to end, where a real Stone is installed (marker ``stone``): a keeper
with the stone policy on a devnet whose router trusts our IntegrityGuard over Integrity's
real CairoVerifier runs three epochs. Each: the model traced on the on-chain inputs,
proved by Stone, pre-checked by swiftness, verified by Integrity's verifier through the
guard in one ``verify_proof_full`` transaction (the registrar: the default proof fits a
Starknet transaction), then executed by the router under the pinned verifier
configuration.

Runs wherever `make setup` installed Stone (``prover.stone_tools.locate_stone``: the
KEEPER_PROVER__STONE_*_PATH variables, .tools/stone, PATH); skipped, with the reason, only
where no Stone or no Integrity classes are there.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from prover import model
from tests.contracts.conftest import Deployed
from tests.e2e.harness import (
    KeeperSetup,
    epoch,
    executed_events,
    stone_provers,
    wait_for_epoch,
    wait_for_jobs,
    wait_until,
)

pytestmark = [pytest.mark.devnet, pytest.mark.stone]

EPOCHS = 3
STONE_DEADLINE_S = 1800.0  # a real proof of the allocation trace, three times



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
        # The monolith (chain.integrity_flow = auto, 4,665 felts), then the execution.
        assert kinds.count("fact_registration") == 1 and kinds.count("execution") == 1
        assert all(int(p["fee_amount"]) > 0 for p in paid)
        sent = setup.query(
            "SELECT function, status FROM fact_registrations WHERE job_id = ?", (job["id"],)
        )
        assert [(r["function"], r["status"]) for r in sent] == [
            ("verify_proof_full", "succeeded")
        ]


async def test_sigkill_during_a_real_proof_leaves_no_prover_and_executes_once(
    stone_env: dict[str, str], deployed_with_integrity: Deployed, keeper_dir: Path
) -> None:
    """A keeper killed with SIGKILL while Stone proves (the OOM killer, `kill -9`): no
    cpu_air_prover is left after 5 s; the restarted keeper resumes the job with exactly
    one prover, and the epoch executes once."""
    deployed = deployed_with_integrity
    setup = KeeperSetup(deployed, keeper_dir, policy="stone_only", extra_env=stone_env)
    keeper = setup.start()

    async def proving() -> dict[int, int]:
        return {p: pp for p, pp in stone_provers(keeper_dir).items() if pp == keeper.pid}

    first = await wait_until("Stone proving", proving, keeper=keeper, deadline_s=600)
    keeper.process.send_signal(signal.SIGKILL)
    keeper.process.wait()

    async def gone() -> bool:
        return not any(pid in stone_provers(keeper_dir) for pid in first)

    await wait_until("the orphaned prover gone", gone, deadline_s=5)

    restarted = setup.start()
    try:
        seen: set[int] = set()

        async def executed() -> bool:
            provers = stone_provers(keeper_dir)
            assert len(provers) <= 1, f"more than one prover at once: {provers}"
            assert all(parent == restarted.pid for parent in provers.values()), provers
            seen.update(provers)
            return await epoch(deployed) >= 1

        await wait_until(
            "epoch 0 executed", executed, keeper=restarted, deadline_s=STONE_DEADLINE_S
        )
        await wait_for_jobs(setup, {"confirmed"}, restarted)
    finally:
        assert restarted.stop() == 0
    assert seen, "the restarted keeper never ran Stone: the job was not resumed by a proof"
    assert len(await executed_events(deployed)) == 1
    jobs = setup.query("SELECT epoch, state, prover FROM jobs")
    assert [(j["epoch"], j["state"], j["prover"]) for j in jobs] == [(0, "confirmed", "stone")]

