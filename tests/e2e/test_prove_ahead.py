"""Proofs made ahead, on the real path (real Stone, swiftness, Integrity's real classes
behind our IntegrityGuard, devnet), with a SIGKILL and an input change on the way:

1. epoch 0 is due at once (a fresh router): its job proves for itself;
2. once it executed, the keeper proves epoch 1's inputs ahead; it is SIGKILLed during that
   proof: no prover is left, the restarted keeper discards the interrupted proof and makes
   it again;
3. a new metrics snapshot (too small a change to make the rebalance due by drift) changes
   the inputs: the ready proof is discarded, never registered, and the new inputs proved;
4. the owner requests the rebalance: the job takes the proof made ahead and only registers
   and executes; the epoch executes once, every registration transaction is for its fact.

At most one prover runs at any time. The time from request to execution is printed, not
asserted (bench/bench_e2e.py measures it). The proofs use 4 cosets x 19 queries + 20 PoW
bits (96 bits; about half the default's prover CPU) to keep the suite's time down.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from keeper.devnet.process import KeeperProcess
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

DEADLINE_S = 1200.0
FAST_SHAPE = {
    "KEEPER_PROVER__LOG_N_COSETS": "4",
    "KEEPER_PROVER__PROOF_OF_WORK_BITS": "20",
    "KEEPER_PROVER__LAST_LAYER_DEGREE_BOUND": "64",
}



async def test_proofs_made_ahead_survive_a_kill_are_discarded_on_new_inputs_and_used_when_due(
    stone_env: dict[str, str], deployed_with_integrity: Deployed, keeper_dir: Path
) -> None:
    deployed = deployed_with_integrity
    setup = KeeperSetup(
        deployed, keeper_dir, policy="stone_only", extra_env={**stone_env, **FAST_SHAPE}
    )
    seen_provers: set[int] = set()

    def one_prover(keeper: KeeperProcess) -> dict[int, int]:
        provers = stone_provers(keeper_dir)
        assert len(provers) <= 1, f"more than one prover at once: {provers}"
        assert all(parent == keeper.pid for parent in provers.values()), provers
        seen_provers.update(provers)
        return provers

    def ahead_rows() -> list[dict[str, object]]:
        return [
            dict(r)
            for r in setup.query(
                "SELECT id, epoch, state, inputs_commitment, fact_hash, used_by, reason "
                "FROM ahead_proofs ORDER BY id"
            )
        ]

    keeper = setup.start()
    try:
        await wait_for_epoch(deployed, 1, keeper, deadline_s=DEADLINE_S)

        async def proving_ahead() -> dict[int, int]:
            rows = [r for r in ahead_rows() if r["state"] == "proving"]
            return one_prover(keeper) if rows else {}

        first = await wait_until("a proof made ahead", proving_ahead, keeper=keeper,
                                 deadline_s=DEADLINE_S)
    except BaseException:
        keeper.stop()
        raise
    keeper.process.send_signal(signal.SIGKILL)
    keeper.process.wait()

    async def gone() -> bool:
        return not any(pid in stone_provers(keeper_dir) for pid in first)

    await wait_until("the killed keeper's prover gone", gone, deadline_s=5)

    restarted = setup.start()
    try:
        async def ready() -> list[dict[str, object]]:
            one_prover(restarted)
            return [r for r in ahead_rows() if r["state"] == "ready"]

        (made,) = await wait_until("the proof made ahead again", ready, keeper=restarted,
                                   deadline_s=DEADLINE_S)
        snapshot = await deployed.metrics()
        snapshot[0]["apy_bps"] += 1  # new inputs, not a drift that makes the rebalance due
        await deployed.set_metrics(snapshot)

        async def ready_for_new_inputs() -> list[dict[str, object]]:
            one_prover(restarted)
            return [r for r in ahead_rows() if r["state"] == "ready" and r["id"] != made["id"]]

        (renewed,) = await wait_until("a proof of the new inputs", ready_for_new_inputs,
                                      keeper=restarted, deadline_s=DEADLINE_S)
        assert await epoch(deployed) == 1  # nothing was due meanwhile
        inputs = await deployed.allocation_inputs()
        requested = time.monotonic()
        await deployed.invoke(deployed.owner, "StrategyRouterV2", "request_rebalance")

        async def executed() -> bool:
            one_prover(restarted)
            return await epoch(deployed) >= 2

        await wait_until("epoch 1 executed", executed, keeper=restarted, deadline_s=DEADLINE_S)
        took = time.monotonic() - requested
        print(f"requested -> executed with a proof made ahead: {took:.1f} s")
        await wait_for_jobs(setup, {"confirmed"}, restarted)
    finally:
        assert restarted.stop() == 0

    allocation = [int(a) for a in await deployed.view("StrategyRouterV2", "get_allocation")]
    assert allocation == list(model.compute_allocation(inputs).allocation)
    assert len(await executed_events(deployed)) == 2  # epochs 0 and 1, once each

    rows = ahead_rows()
    interrupted, discarded, used = rows[0], rows[-2], rows[-1]
    assert interrupted["state"] == "discarded" and "interrupted" in str(interrupted["reason"])
    assert discarded["id"] == made["id"] and discarded["state"] == "discarded"
    assert "inputs changed" in str(discarded["reason"])
    assert discarded["inputs_commitment"] == interrupted["inputs_commitment"]
    assert used["id"] == renewed["id"] and used["state"] == "used"
    assert used["inputs_commitment"] != discarded["inputs_commitment"]
    (job,) = setup.query("SELECT id, prover, fact_hash FROM jobs WHERE epoch = 1")
    assert (used["used_by"], job["prover"], job["fact_hash"]) == (job["id"], "stone",
                                                                   used["fact_hash"])
    details = [r["detail"] for r in setup.query(
        "SELECT detail FROM job_transitions WHERE job_id = ? ORDER BY id", (job["id"],))]
    assert any("proved ahead" in str(d) for d in details)

    # Nothing was ever sent for the discarded proof; the used one was registered once.
    registered = {r["fact_hash"] for r in setup.query("SELECT fact_hash FROM fact_registrations")}
    assert discarded["fact_hash"] not in registered and job["fact_hash"] in registered
    # Its CPU is still counted, with no job to pay for it.
    wasted = setup.query(
        "SELECT job_id, kind, cpu_s FROM costs WHERE outcome = 'discarded' AND kind = 'proof' "
        "AND cpu_s IS NOT NULL"
    )
    assert wasted and all(w["job_id"] is None and w["cpu_s"] > 0 for w in wasted)
    assert setup.query(
        "SELECT COUNT(*) AS n FROM costs WHERE job_id = ? AND kind = 'proof' AND outcome = 'ok'",
        (job["id"],),
    )[0]["n"] == 1
    assert seen_provers
