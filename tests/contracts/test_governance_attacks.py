"""The governance holes of issue 18, as attacks on devnet: each was possible before the
fix (the test failed), and each is now refused.

- F2: a change proposed while the delay was short outlived a raised delay and was applied
  later with no fresh notice. Now raising the delay cancels every pending change.
- F3: RiskEngine's model parameters and oracle changed at once, moving the allocation
  inside the router's delay. Now they go through RiskEngine's own timelock.
- Ownership: a previous owner's pending proposals survived a transfer and the new owner
  could apply them. Now accepting ownership cancels them.
"""

from __future__ import annotations

from typing import Any

import pytest
from starknet_py.hash.selector import get_selector_from_name
from starknet_py.net.client_models import Call

from keeper.devnet import deploy as devnet_deploy
from tests.contracts.conftest import (
    DIRECT_PIN,
    HOUR,
    AbiCodec,
    Deployed,
    deploy_fresh,
    direct_fact,
    events_named,
    expect_revert,
    short_string,
)
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet

ROUTER = "StrategyRouterV2"
RISK = "RiskEngine"
DAY = 24 * HOUR
# Moves the devnet allocation [3318, 3014, 3668] to [4264, 2906, 2830] (prover.model).
MOVING_MODEL = {"w_util": 5, "w_vol": 90}


@pytest.fixture
async def timelocked(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
) -> Deployed:
    """Router and RiskEngine with a one-hour governance delay."""
    return await deploy_fresh(devnet, contract_artifacts, codecs, governance_delay_s=HOUR)


def cancelled_params(d: Deployed, receipt: Any, contract: str) -> list[int]:
    address = d.deployment.address(contract)
    return [e.keys[1] for e in events_named(receipt, "GovernanceChangeCancelled", address)]


async def forged_registry(d: Deployed) -> tuple[int, Call]:
    """A DevFactRegistry whose registrar is the outsider, and the outsider's registration
    of the current output's fact in it (what a swapped registry would accept)."""
    registry, _ = await d.deploy_another("DevFactRegistry", [d.outsider.address])
    output = await d.expected_output()
    register = Call(
        to_addr=registry,
        selector=get_selector_from_name("register_fact"),
        calldata=d.codecs["DevFactRegistry"].calldata(
            "register_fact", direct_fact(output), 128, DIRECT_PIN
        ),
    )
    return registry, register


# --- F2 ---------------------------------------------------------------------------------------


async def test_f2_a_proposal_made_at_delay_0_dies_when_the_delay_is_raised(
    deployed: Deployed,
) -> None:
    d = deployed  # governance_delay_s 0
    registry, register = await forged_registry(d)
    # The attack: propose the registry swap at delay 0 (eta = now) and leave it pending.
    await d.propose("fact_registry", [registry])
    await d.propose("min_diversification", [3])
    await d.propose("keeper", [1], d.outsider.address)
    await d.cancel("min_diversification")  # the middle one: the pending list stays exact

    receipt = await d.change("governance_delay_s", [2 * DAY])

    assert sorted(cancelled_params(d, receipt, ROUTER)) == sorted(
        [short_string("fact_registry"), short_string("keeper")]
    )
    assert await d.pending("fact_registry") is None
    assert await d.pending("keeper", d.outsider.address) is None
    d.devnet.increase_time(13 * DAY)
    await expect_revert(d.apply("fact_registry"), "no pending change")
    gov = await d.view(ROUTER, "get_governance_params")
    assert (gov["fact_registry"], gov["governance_delay_s"]) == (d.registry_address, 2 * DAY)
    # What the swap was for: a verification the outsider registered is not the router's.
    receipt = await d.send(d.outsider, [register])
    (registered,) = events_named(receipt, "FactRegistered", registry)
    await expect_revert(
        d.execute(await d.expected_output(), int(registered.keys[-1])), "verification not found"
    )
    # Proposed again, the swap waits the delay in force.
    receipt = await d.propose("fact_registry", [registry])
    (proposed,) = events_named(receipt, "GovernanceChangeProposed", d.router_address)
    assert abs(proposed.data[-1] - (await d.timestamp() + 2 * DAY)) <= 2
    await expect_revert(d.apply("fact_registry"), "change not yet due")


async def test_f2_a_lowered_delay_keeps_pending_changes_and_their_eta(
    timelocked: Deployed,
) -> None:
    d = timelocked
    receipt = await d.propose("max_single_bps", [6000])
    (proposed,) = events_named(receipt, "GovernanceChangeProposed", d.router_address)
    await d.propose("governance_delay_s", [60])
    d.devnet.increase_time(HOUR)
    receipt = await d.apply("governance_delay_s")
    assert cancelled_params(d, receipt, ROUTER) == []
    assert (await d.pending("max_single_bps"))["eta"] == proposed.data[-1]


async def test_f2_raising_risk_engines_delay_cancels_its_pending_changes(
    deployed: Deployed,
) -> None:
    d = deployed
    params = dict(await d.view(RISK, "get_model_params"))
    moved = [{**params, **MOVING_MODEL}[n] for n in devnet_deploy.MODEL_PARAM_NAMES]
    await d.propose("model_params", moved, contract=RISK)
    await d.propose("oracle", [d.outsider.address], contract=RISK)
    receipt = await d.change("governance_delay_s", [2 * DAY], contract=RISK)
    assert sorted(cancelled_params(d, receipt, RISK)) == sorted(
        [short_string("model_params"), short_string("oracle")]
    )
    d.devnet.increase_time(13 * DAY)
    await expect_revert(d.apply("model_params", contract=RISK), "no pending change")
    assert dict(await d.view(RISK, "get_model_params")) == params
    assert await d.view(RISK, "get_governance_delay_s") == 2 * DAY


# --- F3 ---------------------------------------------------------------------------------------


async def test_f3_the_immediate_risk_engine_setters_are_gone(timelocked: Deployed) -> None:
    d = timelocked
    for setter, args in (("set_model_params", [1] * 12), ("set_oracle", [d.outsider.address])):
        call = Call(d.risk_engine_address, get_selector_from_name(setter), args)
        await expect_revert(d.send(d.owner, [call]), "ENTRYPOINT_NOT_FOUND")


async def test_f3_the_model_moves_the_allocation_only_after_the_delay(
    timelocked: Deployed,
) -> None:
    d = timelocked
    assert await d.view(RISK, "get_governance_delay_s") == HOUR  # the router's delay
    before = await d.expected_output()
    n = before[5]
    assert before[6 : 6 + n] == [3318, 3014, 3668]
    commitment = await d.view(RISK, "get_inputs_commitment")
    params = dict(await d.view(RISK, "get_model_params"))
    moved = [{**params, **MOVING_MODEL}[name] for name in devnet_deploy.MODEL_PARAM_NAMES]

    receipt = await d.propose("model_params", moved, contract=RISK)
    (proposed,) = events_named(receipt, "GovernanceChangeProposed", d.risk_engine_address)
    assert proposed.keys[1:] == [short_string("model_params"), 0]
    assert proposed.data[:13] == [12, *moved]
    assert abs(proposed.data[-1] - (await d.timestamp() + HOUR)) <= 2
    await expect_revert(d.apply("model_params", contract=RISK), "change not yet due")
    assert await d.view(RISK, "get_inputs_commitment") == commitment
    # Inside the delay the router executes what the model makes of today's inputs.
    assert await d.prove_and_execute() == before

    d.devnet.increase_time(HOUR)
    receipt = await d.apply("model_params", contract=RISK)
    names = [e.keys[0] for e in receipt.events if e.from_address == d.risk_engine_address]
    assert names == [
        get_selector_from_name("GovernanceChangeApplied"),
        get_selector_from_name("ModelParamsUpdated"),
    ]
    after = await d.expected_output()
    assert after[6 : 6 + n] == [4264, 2906, 2830]
    assert await d.view(RISK, "get_inputs_commitment") != commitment


async def test_f3_a_new_oracle_publishes_only_after_the_delay(timelocked: Deployed) -> None:
    d = timelocked
    metrics = await d.metrics()
    metrics[0]["apy_bps"] = 2000
    await d.propose("oracle", [d.outsider.address], contract=RISK)
    publish = d.call(RISK, "set_all_metrics", metrics)
    await expect_revert(d.send(d.outsider, [publish]), "caller is not oracle")
    assert await d.view(RISK, "get_oracle") == d.owner.address
    d.devnet.increase_time(HOUR)
    receipt = await d.apply("oracle", contract=RISK)
    (updated,) = events_named(receipt, "OracleUpdated", d.risk_engine_address)
    assert updated.data == [d.owner.address, d.outsider.address]
    await d.send(d.outsider, [publish])
    assert (await d.metrics())[0]["apy_bps"] == 2000


async def test_f3_risk_engine_proposals_are_validated(timelocked: Deployed) -> None:
    d = timelocked
    params = dict(await d.view(RISK, "get_model_params"))
    valid = [params[n] for n in devnet_deploy.MODEL_PARAM_NAMES]
    cases: list[tuple[str, list[int], int, str]] = [
        ("model_params", valid[:11], 0, "wrong number of values"),
        ("model_params", [*valid[:7], 0, *valid[8:]], 0, "audit_den must be >= 1"),
        ("model_params", [2**40, *valid[1:]], 0, "model param > 100000"),
        ("model_params", valid, 1, "subject must be 0"),
        ("oracle", [2**251 + 1], 0, "oracle not an address"),
        ("governance_delay_s", [30 * DAY + 1], 0, "delay above 30 days"),
        ("max_single_bps", [6000], 0, "unknown governance param"),
    ]
    for param, values, subject, reason in cases:
        await expect_revert(d.propose(param, values, subject, contract=RISK), reason)
    await d.propose("oracle", [d.keeper.address], contract=RISK)
    await expect_revert(
        d.propose("oracle", [d.outsider.address], contract=RISK), "change already pending"
    )
    await expect_revert(d.apply("oracle", 1, contract=RISK), "no pending change")
    receipt = await d.cancel("oracle", contract=RISK)
    assert cancelled_params(d, receipt, RISK) == [short_string("oracle")]
    assert await d.pending("oracle", contract=RISK) is None


async def test_f3_a_change_expires_fourteen_days_after_its_eta(timelocked: Deployed) -> None:
    d = timelocked
    await d.propose("oracle", [d.keeper.address], contract=RISK)
    d.devnet.increase_time(HOUR + 14 * DAY + 60)
    await expect_revert(d.apply("oracle", contract=RISK), "change expired")


# --- ownership --------------------------------------------------------------------------------


@pytest.mark.parametrize("contract", [ROUTER, RISK])
async def test_a_previous_owners_proposals_do_not_survive_the_transfer(
    timelocked: Deployed, contract: str
) -> None:
    d = timelocked
    if contract == ROUTER:
        registry, _ = await forged_registry(d)
        proposals = [("fact_registry", [registry], 0), ("keeper", [1], d.outsider.address)]
    else:
        proposals = [("oracle", [d.outsider.address], 0)]
    for param, values, subject in proposals:
        await d.propose(param, values, subject, contract=contract)
    await d.invoke(d.owner, contract, "transfer_ownership", d.outsider.address)
    for param, _, subject in proposals:  # a transfer not yet accepted cancels nothing
        assert await d.pending(param, subject, contract=contract) is not None

    receipt = await d.invoke(d.outsider, contract, "accept_ownership")

    assert sorted(cancelled_params(d, receipt, contract)) == sorted(
        short_string(param) for param, _, _ in proposals
    )
    d.devnet.increase_time(HOUR)
    for param, _, subject in proposals:
        assert await d.pending(param, subject, contract=contract) is None
        await expect_revert(
            d.apply(param, subject, account=d.outsider, contract=contract), "no pending change"
        )
    if contract == ROUTER:
        gov = await d.view(ROUTER, "get_governance_params")
        assert gov["fact_registry"] == d.registry_address
        assert await d.view(ROUTER, "is_keeper", d.outsider.address) is False
    else:
        assert await d.view(RISK, "get_oracle") == d.owner.address
    # The new owner's own proposals follow the timelock as usual.
    param, values, subject = proposals[-1]
    await d.propose(param, values, subject, account=d.outsider, contract=contract)
    d.devnet.increase_time(HOUR)
    await d.apply(param, subject, account=d.outsider, contract=contract)
    assert await d.pending(param, subject, contract=contract) is None
