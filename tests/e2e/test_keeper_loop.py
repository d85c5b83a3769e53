"""The product, end to end: a real keeper process on a real devnet.

Oracle updates → request_rebalance → the keeper detects, traces, proves (dev prover, and
the Stone stand-in), registers the fact, executes; the on-chain allocation equals the
reference model's; the ledger has the rows. Then the triggers, governance, crash safety
at every state boundary, and two keepers racing for one router.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prover import model
from tests.contracts.conftest import Deployed
from tests.e2e.harness import (
    KeeperSetup,
    epoch,
    executed_events,
    stone_stand_in_env,
    wait_for_epoch,
    wait_for_jobs,
    wait_until,
)

pytestmark = pytest.mark.devnet

METRICS_UPDATE = {  # protocol 1 gets riskier and its APY drops: a visible reallocation
    "utilization_bps": 9500,
    "volatility_bps": 6000,
    "liquidity_tier": 2,
    "audit_score": 60,
    "age_days": 100,
    "apy_bps": 300,
}


async def _set_metrics(deployed: Deployed, index: int, metrics: dict[str, int]) -> None:
    await deployed.invoke(deployed.owner, "RiskEngine", "set_metrics", index, metrics)


async def _request(deployed: Deployed) -> None:
    await deployed.invoke(deployed.keeper, "StrategyRouterV2", "request_rebalance")


async def _allocation(deployed: Deployed) -> list[int]:
    (alloc,) = await deployed.view("StrategyRouterV2", "get_allocation")
    return [int(a) for a in alloc]


async def _model_allocation(deployed: Deployed) -> list[int]:
    inputs = await deployed.allocation_inputs()
    return list(model.compute_allocation(inputs).allocation)


async def test_request_to_executed_allocation_with_ledger(
    deployed: Deployed, keeper_dir: Path
) -> None:
    setup = KeeperSetup(deployed, keeper_dir)
    keeper = setup.start()
    try:
        # A fresh router has no allocation: the keeper rebalances epoch 0 on its own.
        await wait_for_epoch(deployed, 1, keeper)
        assert await _allocation(deployed) == await _model_allocation(deployed)

        # Only the request may trigger the next epoch: drift is switched off by governance.
        await deployed.invoke(deployed.owner, "StrategyRouterV2", "set_drift_threshold_bps", 9999)
        await _set_metrics(deployed, 1, METRICS_UPDATE)
        before = await _allocation(deployed)
        await _request(deployed)
        await wait_for_epoch(deployed, 2, keeper)
        after = await _allocation(deployed)
        assert after == await _model_allocation(deployed)
        assert after != before
        await wait_for_jobs(setup, {"confirmed"}, keeper)
    finally:
        assert keeper.stop() == 0
    jobs = setup.query("SELECT epoch, state, trigger, prover FROM jobs ORDER BY epoch")
    assert [(j["epoch"], j["state"], j["prover"]) for j in jobs] == [
        (0, "confirmed", "dev"),
        (1, "confirmed", "dev"),
    ]
    assert jobs[1]["trigger"] == "request"
    costs = setup.query("SELECT job_id, kind, outcome, fee_amount, fee_unit FROM costs")
    for epoch_no in (0, 1):
        kinds = {c["kind"] for c in costs if c["job_id"].endswith(f":{epoch_no}")}
        assert kinds == {"trace", "fact_registration", "execution"}
    fees = [c for c in costs if c["kind"] in ("fact_registration", "execution")]
    assert all(int(c["fee_amount"]) > 0 and c["fee_unit"] == "FRI" for c in fees)
    assert any(line.get("prover") == "dev" for line in keeper.log_lines())
    assert len(await executed_events(deployed)) == 2


async def test_stone_stand_in_proves_then_executes(deployed: Deployed, keeper_dir: Path) -> None:
    setup = KeeperSetup(
        deployed,
        keeper_dir,
        policy="stone_only",
        extra_env=stone_stand_in_env(),
    )
    keeper = setup.start()
    try:
        await wait_for_epoch(deployed, 1, keeper)
        await wait_for_jobs(setup, {"confirmed"}, keeper)
    finally:
        assert keeper.stop() == 0
    (job,) = setup.query("SELECT state, prover, proof_path, security_bits FROM jobs")
    assert (job["state"], job["prover"]) == ("confirmed", "stone")
    assert Path(job["proof_path"]).is_file() and job["security_bits"] >= 96
    proof_rows = setup.query(
        "SELECT prover, outcome, cpu_s, proof_bytes FROM costs WHERE kind='proof'"
    )
    assert [(r["prover"], r["outcome"]) for r in proof_rows] == [("stone", "ok")]
    assert proof_rows[0]["proof_bytes"] > 0


async def test_interval_and_drift_triggers(deployed: Deployed, keeper_dir: Path) -> None:
    setup = KeeperSetup(deployed, keeper_dir)
    keeper = setup.start()
    try:
        await wait_for_epoch(deployed, 1, keeper)
        # Drift: a metrics change that moves some allocation by more than 500 bps.
        await _set_metrics(deployed, 1, METRICS_UPDATE)
        await wait_for_epoch(deployed, 2, keeper)
        # Interval: nothing changed, but an hour passes on the chain's clock.
        deployed.devnet.increase_time(3601)
        deployed.devnet.create_block()
        await wait_for_epoch(deployed, 3, keeper)
    finally:
        assert keeper.stop() == 0
    triggers = [r["trigger"] for r in setup.query("SELECT trigger FROM jobs ORDER BY epoch")]
    assert triggers[1:] == ["drift", "interval"]


async def test_governance_max_single_applies_to_next_job(
    deployed: Deployed, keeper_dir: Path
) -> None:
    setup = KeeperSetup(deployed, keeper_dir)
    keeper = setup.start()
    try:
        await wait_for_epoch(deployed, 1, keeper)
        await deployed.invoke(deployed.owner, "StrategyRouterV2", "set_max_single_bps", 3400)
        await _request(deployed)
        await wait_for_epoch(deployed, 2, keeper)
        assert max(await _allocation(deployed)) <= 3400
    finally:
        assert keeper.stop() == 0
    (job,) = setup.query("SELECT output_json FROM jobs WHERE epoch = 1")
    assert int(json.loads(job["output_json"])[3]) == 3400
    changes = setup.query(
        "SELECT old_value, new_value FROM governance_changes WHERE param = 'max_single_bps'"
        " AND event_id IS NOT NULL"
    )
    assert [(c["old_value"], c["new_value"]) for c in changes][-1] == ("5000", "3400")


async def test_program_hash_change_halts_without_submitting(
    deployed: Deployed, keeper_dir: Path
) -> None:
    setup = KeeperSetup(deployed, keeper_dir)
    keeper = setup.start()
    try:
        await wait_for_epoch(deployed, 1, keeper)
        await deployed.invoke(deployed.owner, "StrategyRouterV2", "set_program_hash", 0x1234)
        await _request(deployed)

        async def halted() -> bool:
            return bool(keeper.events("keeper.halted"))

        await wait_until("the keeper to halt", halted, keeper=keeper)
        (line,) = keeper.events("keeper.halted")[:1]
        assert "0x1234" in line["reason"] and "stopping" in line["reason"]
        assert await epoch(deployed) == 1
        assert keeper.process.poll() is None  # alive, saying why, not restart-looping
    finally:
        assert keeper.stop() == 0
    submitted = setup.query("SELECT id FROM jobs WHERE submit_tx_hash IS NOT NULL AND epoch = 1")
    assert submitted == []


CRASH_POINTS = [
    "traced",
    "proved",
    "fact_registered",
    "submitted_before_broadcast",
    "submitted",
    "confirmed",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
async def test_sigkill_at_each_state_boundary_executes_once(
    deployed: Deployed, keeper_dir: Path, point: str
) -> None:
    setup = KeeperSetup(deployed, keeper_dir)
    crashing = setup.start(KEEPER_TEST_CRASH_AT=point)
    assert crashing.process.wait(timeout=180) == -9, crashing.log_path.read_text()[-3000:]
    keeper = setup.start()
    try:
        await wait_for_epoch(deployed, 1, keeper)
        # Give the restarted keeper a chance to do something twice: another request
        # must lead to exactly one more epoch.
        await _request(deployed)
        await wait_for_epoch(deployed, 2, keeper)
        await wait_for_jobs(setup, {"confirmed"}, keeper)
    finally:
        assert keeper.stop() == 0
    events = await executed_events(deployed)
    assert [int(e.keys[1]) for e in events] == [0, 1]
    jobs = setup.query("SELECT epoch, state FROM jobs ORDER BY epoch")
    assert [(j["epoch"], j["state"]) for j in jobs] == [(0, "confirmed"), (1, "confirmed")]


async def test_two_keepers_racing_never_double_execute(deployed: Deployed, tmp_path: Path) -> None:
    # Account 2 becomes a second keeper (and both may register facts on the dev registry).
    await deployed.invoke(
        deployed.owner, "StrategyRouterV2", "set_keeper", deployed.outsider.address, True
    )
    first = KeeperSetup(deployed, tmp_path / "a", account_index=1)
    second = KeeperSetup(deployed, tmp_path / "b", account_index=2)
    a, b = first.start(), second.start()
    try:
        await wait_for_epoch(deployed, 1, a)
        await _request(deployed)
        await wait_for_epoch(deployed, 2, a)
        done = {"confirmed", "superseded", "failed"}
        await wait_for_jobs(first, done, a)
        await wait_for_jobs(second, done, b)
    finally:
        assert a.stop() == 0
        assert b.stop() == 0
    events = await executed_events(deployed)
    assert sorted(int(e.keys[1]) for e in events) == [0, 1]
    for epoch_no in (0, 1):
        states = sorted(
            row["state"]
            for setup in (first, second)
            for row in setup.query("SELECT state FROM jobs WHERE epoch = ?", (epoch_no,))
        )
        assert "confirmed" in states
        assert set(states) <= {"confirmed", "superseded", "failed"}
        assert states.count("confirmed") + states.count("superseded") >= 1
