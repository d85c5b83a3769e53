"""StrategyRouterV2's governance: the constructor takes (and emits) the whole
configuration, every later change goes through the timelock (propose, wait the delay,
apply within the grace window, or cancel), ownership moves in two steps."""

from __future__ import annotations

from typing import Any

import pytest
from starknet_py.hash.selector import get_selector_from_name
from starknet_py.net.client_models import Call

from keeper.chain.governance import param_names
from keeper.devnet import deploy as devnet_deploy
from tests.contracts.conftest import (
    DEPLOY_PARAMS,
    GRACE_S,
    HOUR,
    AbiCodec,
    Deployed,
    config,
    decode_short_string,
    deploy_fresh,
    direct_fact,
    events_named,
    expect_revert,
    short_string,
)
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet

ROUTER = "StrategyRouterV2"


@pytest.fixture
async def timelocked(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
) -> Deployed:
    """A router whose governance_delay_s is one hour."""
    return await deploy_fresh(devnet, contract_artifacts, codecs, governance_delay_s=HOUR)


def eta_of(deployed: Deployed, receipt: Any) -> int:
    (proposed,) = events_named(receipt, "GovernanceChangeProposed", deployed.router_address)
    return int(proposed.data[-1])


def constructor_calldata(deployed: Deployed, **changes: int) -> list[int]:
    """The constructor calldata of the deployed router's configuration, changed."""
    wanted = devnet_deploy.wanted_governance(
        devnet_deploy.load_deploy_params(DEPLOY_PARAMS),
        registry=deployed.registry_address,
        risk_engine=deployed.risk_engine_address,
        program_hash=0x1,
        child_program_hash=0x2,
    )
    values = {**wanted.as_dict(), **changes}
    return [deployed.owner.address, 1, deployed.keeper.address, *values.values()]


# --- the constructor --------------------------------------------------------------------------


async def test_constructor_sets_and_emits_the_whole_configuration(deployed: Deployed) -> None:
    calldata = constructor_calldata(deployed)
    router, receipt = await deployed.deploy_another(ROUTER, calldata)
    (owned,) = events_named(receipt, "OwnershipTransferred", router)
    assert owned.data == [0, deployed.owner.address]
    updates = events_named(receipt, "GovernanceParamsUpdated", router)
    assert [decode_short_string(e.keys[1]) for e in updates] == list(param_names())
    assert all(e.data[0] == 0 for e in updates)
    assert [e.data[1] for e in updates] == calldata[3:]
    (keeper,) = events_named(receipt, "KeeperUpdated", router)
    assert (keeper.keys[1], keeper.data) == (deployed.keeper.address, [1])
    # In that order: ownership, the 18 values, the keepers.
    names = [e.keys[0] for e in receipt.events if e.from_address == router]
    assert names == [
        get_selector_from_name("OwnershipTransferred"),
        *[get_selector_from_name("GovernanceParamsUpdated")] * 18,
        get_selector_from_name("KeeperUpdated"),
    ]


async def test_the_deployed_router_reads_back_what_it_was_given(deployed: Deployed) -> None:
    gov = await deployed.view(ROUTER, "get_governance_params")
    assert (gov["min_security_bits"], gov["governance_delay_s"]) == (96, 0)
    assert gov["fact_registry"] == deployed.registry_address
    assert decode_short_string(gov["direct_layout"]) == "small"
    assert decode_short_string(gov["bootloaded_layout"]) == "recursive"
    assert decode_short_string(gov["direct_memory_verification"]) == "strict"
    assert await deployed.view(ROUTER, "get_owner") == deployed.owner.address
    assert await deployed.view(ROUTER, "get_pending_owner") == 0
    assert await deployed.view(ROUTER, "is_keeper", deployed.keeper.address) is True
    assert await deployed.view(ROUTER, "is_keeper", deployed.outsider.address) is False


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"min_security_bits": 79}, "min_security_bits not 80..256"),
        ({"min_security_bits": 257}, "min_security_bits not 80..256"),
        ({"direct_memory_verification": short_string("relaxed")}, "memory verification not strict"),
        ({"bootloaded_hasher": 0}, "verifier pin has a zero field"),
        ({"governance_delay_s": 30 * 24 * HOUR + 1}, "delay above 30 days"),
        ({"max_single_bps": 0}, "max_single not in 1..10000"),
        ({"fact_registry": 0}, "fact_registry is zero"),
        ({"rebalance_interval_s": 0}, "interval not in 1 s..365 days"),
    ],
)
async def test_constructor_validates_like_a_proposal(
    deployed: Deployed, changes: dict[str, int], reason: str
) -> None:
    calldata = constructor_calldata(deployed, **changes)
    await expect_revert(deployed.deploy_another(ROUTER, calldata), reason)


async def test_constructor_refuses_a_zero_owner(deployed: Deployed) -> None:
    calldata = constructor_calldata(deployed)
    await expect_revert(deployed.deploy_another(ROUTER, [0, *calldata[1:]]), "owner is zero")


async def test_the_old_setters_are_gone(deployed: Deployed) -> None:
    for setter in ("set_max_single_bps", "set_program_hash", "set_keeper"):
        call = Call(deployed.router_address, get_selector_from_name(setter), [1])
        await expect_revert(deployed.send(deployed.owner, [call]), "ENTRYPOINT_NOT_FOUND")


# --- the timelock -----------------------------------------------------------------------------


async def test_propose_wait_apply(timelocked: Deployed) -> None:
    d = timelocked
    receipt = await d.propose("max_single_bps", [6000])
    (proposed,) = events_named(receipt, "GovernanceChangeProposed", d.router_address)
    eta = proposed.data[-1]
    # The block that executes is stamped up to a second apart from the one devnet reports.
    assert abs(eta - (await d.timestamp() + HOUR)) <= 2
    assert proposed.keys[1:] == [short_string("max_single_bps"), 0]
    assert proposed.data == [1, 6000, eta]
    pending = await d.pending("max_single_bps")
    assert (list(pending["values"]), pending["eta"]) == ([6000], eta)
    await expect_revert(d.propose("max_single_bps", [7000]), "change already pending")
    await expect_revert(d.apply("max_single_bps"), "change not yet due")
    await expect_revert(d.apply("max_single_bps", account=d.outsider), "caller is not owner")

    d.devnet.increase_time(HOUR)
    receipt = await d.apply("max_single_bps")
    (applied,) = events_named(receipt, "GovernanceChangeApplied", d.router_address)
    assert applied.data == [1, 6000, eta]
    (updated,) = events_named(receipt, "GovernanceParamsUpdated", d.router_address)
    assert (updated.keys[1], updated.data) == (short_string("max_single_bps"), [5000, 6000])
    names = [e.keys[0] for e in receipt.events if e.from_address == d.router_address]
    assert names.index(applied.keys[0]) < names.index(updated.keys[0])  # applied first
    assert (await d.view(ROUTER, "get_governance_params"))["max_single_bps"] == 6000
    assert await d.pending("max_single_bps") is None
    await expect_revert(d.apply("max_single_bps"), "no pending change")


async def test_a_cancelled_change_is_gone(timelocked: Deployed) -> None:
    d = timelocked
    eta = eta_of(d, await d.propose("min_diversification", [3]))
    receipt = await d.cancel("min_diversification")
    (cancelled,) = events_named(receipt, "GovernanceChangeCancelled", d.router_address)
    assert cancelled.data == [1, 3, eta]
    assert await d.pending("min_diversification") is None
    d.devnet.increase_time(HOUR)
    await expect_revert(d.apply("min_diversification"), "no pending change")
    await expect_revert(d.cancel("min_diversification"), "no pending change")
    assert (await d.view(ROUTER, "get_governance_params"))["min_diversification"] == 2
    await d.propose("min_diversification", [4])  # a new proposal may follow
    assert list((await d.pending("min_diversification"))["values"]) == [4]


async def test_a_change_may_be_applied_until_fourteen_days_after_its_eta(
    timelocked: Deployed,
) -> None:
    d = timelocked
    await d.propose("drift_threshold_bps", [100])
    d.devnet.increase_time(HOUR + GRACE_S - 60)  # a minute before it expires
    await d.apply("drift_threshold_bps")
    assert (await d.view(ROUTER, "get_governance_params"))["drift_threshold_bps"] == 100

    await d.propose("rebalance_interval_s", [60])
    d.devnet.increase_time(HOUR + GRACE_S + 60)  # a minute after
    await expect_revert(d.apply("rebalance_interval_s"), "change expired")
    await d.cancel("rebalance_interval_s")  # an expired proposal is cancelled, then re-proposed
    assert await d.pending("rebalance_interval_s") is None
    assert (await d.view(ROUTER, "get_governance_params"))["rebalance_interval_s"] == HOUR


async def test_only_the_owner_proposes_and_cancels(timelocked: Deployed) -> None:
    d = timelocked
    await expect_revert(
        d.propose("max_single_bps", [4500], account=d.outsider), "caller is not owner"
    )
    await d.propose("max_single_bps", [4500])
    cancel = d.call(ROUTER, "cancel_change", short_string("max_single_bps"), 0)
    await expect_revert(d.send(d.keeper, [cancel]), "caller is not owner")


async def test_proposals_are_validated(timelocked: Deployed) -> None:
    d = timelocked
    relaxed = list(config("small", memory="relaxed").values())
    zero_field = [short_string("small"), 0, short_string("stone6"), short_string("strict")]
    cases: list[tuple[str, list[int], int, str]] = [
        ("min_security_bits", [79], 0, "min_security_bits not 80..256"),
        ("min_security_bits", [257], 0, "min_security_bits not 80..256"),
        ("direct_verifier", relaxed, 0, "memory verification not strict"),
        ("bootloaded_verifier", zero_field, 0, "verifier pin has a zero field"),
        ("max_single_bps", [0], 0, "max_single not in 1..10000"),
        ("max_single_bps", [10001], 0, "max_single not in 1..10000"),
        ("min_diversification", [17], 0, "min_div not in 0..16"),
        ("drift_threshold_bps", [10001], 0, "drift threshold > 10000"),
        ("max_single_bps", [4500, 1], 0, "wrong number of values"),
        ("direct_verifier", [1], 0, "wrong number of values"),
        ("max_single_bps", [4500], 5, "subject must be 0"),
        ("fact_registry", [0], 0, "fact_registry is zero"),
        ("risk_engine", [0], 0, "risk_engine is zero"),
        ("governance_delay_s", [30 * 24 * HOUR + 1], 0, "delay above 30 days"),
        ("rebalance_interval_s", [0], 0, "interval not in 1 s..365 days"),
        ("rebalance_interval_s", [365 * 24 * HOUR + 1], 0, "interval not in 1 s..365 days"),
        ("keeper", [2], d.outsider.address, "keeper flag not 0 or 1"),
        ("keeper", [1], 0, "keeper is zero"),
        ("no_such_param", [1], 0, "unknown governance param"),
    ]
    for param, values, subject, reason in cases:
        await expect_revert(d.propose(param, values, subject), reason)
    for param in ("min_security_bits", "direct_verifier", "max_single_bps"):
        assert await d.pending(param) is None


async def test_a_verifier_pin_changes_as_four_updates(deployed: Deployed) -> None:
    receipt = await deployed.change("direct_verifier", list(config("recursive").values()))
    updates = events_named(receipt, "GovernanceParamsUpdated", deployed.router_address)
    assert [decode_short_string(e.keys[1]) for e in updates] == [
        "direct_layout",
        "direct_hasher",
        "direct_stone_version",
        "direct_memory_verification",
    ]
    assert updates[0].data == [short_string("small"), short_string("recursive")]
    gov = await deployed.view(ROUTER, "get_governance_params")
    assert decode_short_string(gov["direct_layout"]) == "recursive"
    receipt = await deployed.change("bootloaded_verifier", [0, 0, 0, 0])  # the path closes
    gov = await deployed.view(ROUTER, "get_governance_params")
    assert [gov[f"bootloaded_{f}"] for f in ("layout", "hasher")] == [0, 0]


async def test_keepers_are_added_and_removed_through_the_timelock(timelocked: Deployed) -> None:
    d = timelocked
    await d.propose("keeper", [0], d.keeper.address)
    assert await d.view(ROUTER, "is_keeper", d.keeper.address) is True  # not before the eta
    d.devnet.increase_time(HOUR)
    receipt = await d.apply("keeper", d.keeper.address)
    (updated,) = events_named(receipt, "KeeperUpdated", d.router_address)
    assert (updated.keys[1], updated.data) == (d.keeper.address, [0])
    output = await d.expected_output()
    verification = await d.register(direct_fact(output))
    await expect_revert(d.execute(output, verification), "caller is not keeper")


async def test_the_delay_itself_waits_and_pending_etas_do_not_move(timelocked: Deployed) -> None:
    d = timelocked
    eta = eta_of(d, await d.propose("max_single_bps", [6000]))
    await d.propose("governance_delay_s", [0])
    await expect_revert(d.apply("governance_delay_s"), "change not yet due")
    d.devnet.increase_time(HOUR)
    await d.apply("governance_delay_s")
    assert (await d.pending("max_single_bps"))["eta"] == eta
    # With no delay, propose and apply share one multicall.
    await d.change("keeper", [1], d.outsider.address)
    assert await d.view(ROUTER, "is_keeper", d.outsider.address) is True


# --- ownership --------------------------------------------------------------------------------


@pytest.mark.parametrize("contract", ["StrategyRouterV2", "RiskEngine"])
async def test_ownership_moves_in_two_steps(deployed: Deployed, contract: str) -> None:
    d = deployed
    address = d.deployment.address(contract)

    async def transfer(account: Any, to: int) -> Any:
        return await d.invoke(account, contract, "transfer_ownership", to)

    await expect_revert(transfer(d.outsider, d.outsider.address), "caller is not owner")
    receipt = await transfer(d.owner, d.outsider.address)
    (started,) = events_named(receipt, "OwnershipTransferStarted", address)
    assert started.data == [d.owner.address, d.outsider.address]
    assert events_named(receipt, "OwnershipTransferred", address) == []
    assert await d.view(contract, "get_pending_owner") == d.outsider.address
    assert await d.view(contract, "get_owner") == d.owner.address  # not yet
    await expect_revert(
        d.invoke(d.keeper, contract, "accept_ownership"), "caller is not pending owner"
    )

    receipt = await d.invoke(d.outsider, contract, "accept_ownership")
    (moved,) = events_named(receipt, "OwnershipTransferred", address)
    assert moved.data == [d.owner.address, d.outsider.address]
    assert await d.view(contract, "get_owner") == d.outsider.address
    assert await d.view(contract, "get_pending_owner") == 0
    await expect_revert(transfer(d.owner, d.owner.address), "caller is not owner")

    # A pending transfer is cancelled by transferring to 0.
    await transfer(d.outsider, d.keeper.address)
    receipt = await transfer(d.outsider, 0)
    (started,) = events_named(receipt, "OwnershipTransferStarted", address)
    assert started.data == [d.outsider.address, 0]
    await expect_revert(
        d.invoke(d.keeper, contract, "accept_ownership"), "caller is not pending owner"
    )
    assert await d.view(contract, "get_owner") == d.outsider.address
