"""The product, end to end: a real keeper process on a real devnet.

Oracle updates → the owner's request_rebalance → the keeper detects, traces, proves (dev
prover, and the Stone stand-in), registers the fact under the router's pin, executes with
that verification; the on-chain allocation equals the reference model's; the ledger has
the rows. Then the triggers, governance through the timelock (a change applied mid-job,
a pending change the keeper waits for, a cancelled one), crash safety at every state
boundary, and two keepers racing for one router.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from prover import model
from prover.swiftness import SwiftnessAnnotationMismatchError
from tests.contracts.conftest import Deployed
from tests.e2e.conftest import DeployReal
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
    """The oracle's complete snapshot with protocol ``index`` replaced."""
    snapshot = await deployed.metrics()
    snapshot[index] = metrics
    await deployed.set_metrics(snapshot)


async def _request(deployed: Deployed) -> None:
    """The owner's request: the one that lifts the router's schedule."""
    await deployed.invoke(deployed.owner, "StrategyRouterV2", "request_rebalance")


async def _allocation(deployed: Deployed) -> list[int]:
    return [int(a) for a in await deployed.view("StrategyRouterV2", "get_allocation")]


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
        await deployed.change("drift_threshold_bps", [9999])
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
    # Each execution named the verification the dev prover registered under the pin.
    for job in setup.query("SELECT fact_hash, verification_hash, security_bits FROM jobs"):
        found = await deployed.view(
            "DevFactRegistry", "get_verification", int(job["verification_hash"], 16)
        )
        assert found["fact_hash"] == int(job["fact_hash"], 16)
        assert found["security_bits"] == job["security_bits"] == 96


async def test_a_stone_proof_swiftness_refuses_costs_no_gas(
    deployed_with_integrity: Deployed, keeper_dir: Path
) -> None:
    """The stone policy against Integrity's real FactRegistry: the stand-in's proof has
    Stone's shape but proves nothing, so the local pre-check (swiftness, Integrity's
    rules) refuses it and the keeper sends no transaction. (A real Stone proof goes on
    through Integrity: tests/e2e/test_stone_integrity.py, marked ``stone``.)"""
    deployed = deployed_with_integrity
    nonce_before = await deployed.keeper.get_nonce()
    setup = KeeperSetup(deployed, keeper_dir, policy="stone_only", extra_env=stone_stand_in_env())
    keeper = setup.start()
    try:
        await wait_for_jobs(setup, {"failed"}, keeper)
    finally:
        assert keeper.stop() == 0
    (job,) = setup.query("SELECT state, prover, failure_code, failure_reason FROM jobs")
    # The stand-in's proof_hex is not what its annotations say: refused as altered.
    assert job["failure_code"] == SwiftnessAnnotationMismatchError.code, dict(job)
    assert "no transaction was sent" in job["failure_reason"]
    proof_rows = setup.query("SELECT prover, outcome FROM costs WHERE kind='proof'")
    assert [(r["prover"], r["outcome"]) for r in proof_rows] == [("stone", "ok")]
    paid = setup.query("SELECT kind FROM costs WHERE fee_amount IS NOT NULL")
    assert paid == []
    assert await deployed.keeper.get_nonce() == nonce_before
    assert await epoch(deployed) == 0
    assert keeper.events("job.failed")


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
        await deployed.change("max_single_bps", [3400])
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
        await deployed.change("program_hash", [0x1234])
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
    await deployed.change("keeper", [1], deployed.outsider.address)
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


async def test_a_change_applied_mid_job_makes_the_keeper_run_it_again(
    deployed: Deployed, keeper_dir: Path
) -> None:
    """The keeper proved epoch 0 under max_single 5000; governance applies 4000 before it
    executes. The router refuses the stale output (nothing is sent: the fee estimate
    says so), and the keeper runs the job again at once on the new value."""
    setup = KeeperSetup(deployed, keeper_dir)
    crashing = setup.start(KEEPER_TEST_CRASH_AT="proved")
    assert crashing.process.wait(timeout=180) == -9, crashing.log_path.read_text()[-3000:]
    (proved,) = setup.query("SELECT state, output_json FROM jobs")
    assert proved["state"] == "proved" and int(json.loads(proved["output_json"])[3]) == 5000
    await deployed.change("max_single_bps", [4000])

    keeper = setup.start()
    try:
        await wait_for_epoch(deployed, 1, keeper)
        await wait_for_jobs(setup, {"confirmed"}, keeper)
    finally:
        assert keeper.stop() == 0
    assert max(await _allocation(deployed)) <= 4000
    (job,) = setup.query("SELECT id, run, output_json FROM jobs")
    assert (job["run"], int(json.loads(job["output_json"])[3])) == (2, 4000)
    moves = setup.query(
        "SELECT from_state, to_state, detail FROM job_transitions WHERE job_id = ? ORDER BY id",
        (job["id"],),
    )
    failed = [m for m in moves if m["to_state"] == "failed"]
    assert len(failed) == 1 and "max_single != governance" in failed[0]["detail"]
    (stale,) = keeper.events("job.stale")
    assert stale["sent"] is False
    executions = setup.query("SELECT outcome FROM costs WHERE kind = 'execution'")
    assert [e["outcome"] for e in executions] == ["ok"]  # the stale output was never sent


@pytest.fixture
async def timelocked(deploy_real: DeployReal) -> Deployed:
    """A deployment accepting the real program, with a one-hour governance delay."""
    return await deploy_real(governance_delay_s=3600)


async def test_the_keeper_waits_for_a_pending_change_and_goes_on_when_it_is_settled(
    timelocked: Deployed, keeper_dir: Path
) -> None:
    deployed = timelocked
    setup = KeeperSetup(deployed, keeper_dir)
    await deployed.propose("max_single_bps", [6000])  # eta in an hour: within the margin
    keeper = setup.start()
    try:

        async def waiting() -> list[dict[str, object]]:
            return keeper.events("job.waiting_for_governance")

        (first,) = await wait_until("the keeper to wait for the change", waiting, keeper=keeper)
        assert "max_single_bps -> 6000" in str(first["reason"])
        assert setup.query("SELECT id FROM jobs") == []  # nothing proved for nothing

        await deployed.cancel("max_single_bps")  # cancelled: epoch 0 goes ahead
        await wait_for_epoch(deployed, 1, keeper)
        await wait_for_jobs(setup, {"confirmed"}, keeper)
        (job,) = setup.query("SELECT output_json FROM jobs")
        assert int(json.loads(job["output_json"])[3]) == 5000

        await deployed.propose("max_single_bps", [6000])
        await _request(deployed)

        async def waiting_again() -> bool:
            return len(keeper.events("job.waiting_for_governance")) == 2

        await wait_until("the keeper to wait again", waiting_again, keeper=keeper)
        deployed.devnet.increase_time(3600)
        await deployed.apply("max_single_bps")  # applied: epoch 1 goes ahead on the new value
        await wait_for_epoch(deployed, 2, keeper)
        await wait_for_jobs(setup, {"confirmed"}, keeper)
    finally:
        assert keeper.stop() == 0
    (job,) = setup.query("SELECT output_json FROM jobs WHERE epoch = 1")
    assert int(json.loads(job["output_json"])[3]) == 6000
    proposals = setup.query("SELECT param, status FROM governance_proposals ORDER BY id")
    assert [(p["param"], p["status"]) for p in proposals] == [
        ("max_single_bps", "proposed"),
        ("max_single_bps", "cancelled"),
        ("max_single_bps", "proposed"),
        ("max_single_bps", "applied"),
    ]


async def test_the_keeper_waits_for_a_pending_risk_engine_model_and_follows_it(
    timelocked: Deployed, keeper_dir: Path
) -> None:
    # RiskEngine's model goes through its own timelock (issue 18, F3): a job proven on
    # today's inputs would be stale once the new model applies, so the keeper waits.
    deployed = timelocked
    setup = KeeperSetup(deployed, keeper_dir)
    params = dict(await deployed.view("RiskEngine", "get_model_params"))
    moved = {**params, "w_util": 5, "w_vol": 90}
    names = [f.name for f in fields(model.ModelParams)]
    await deployed.propose("model_params", [moved[n] for n in names], contract="RiskEngine")
    keeper = setup.start()
    try:

        async def waiting() -> list[dict[str, object]]:
            return keeper.events("job.waiting_for_governance")

        (first,) = await wait_until("the keeper to wait for the model", waiting, keeper=keeper)
        assert "RiskEngine model_params -> w_util=5, w_vol=90" in str(first["reason"])
        assert setup.query("SELECT id FROM jobs") == []
        deployed.devnet.increase_time(3600)
        await deployed.apply("model_params", contract="RiskEngine")
        await wait_for_epoch(deployed, 1, keeper)
        await wait_for_jobs(setup, {"confirmed"}, keeper)
    finally:
        assert keeper.stop() == 0
    assert await _allocation(deployed) == [4264, 2906, 2830]  # the new model's
    proposals = setup.query(
        "SELECT contract, param, status FROM governance_proposals ORDER BY id"
    )
    assert [(p["contract"], p["param"], p["status"]) for p in proposals] == [
        ("risk_engine", "model_params", "proposed"),
        ("risk_engine", "model_params", "applied"),
    ]
