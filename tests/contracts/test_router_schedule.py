"""StrategyRouterV2's schedule (contracts/README.md check 12): after the first execution,
an epoch executes only when the interval passed, the owner requested it, or the new
allocation moves some protocol by at least the drift threshold."""

from __future__ import annotations

import pytest

from tests.contracts.conftest import (
    HOUR,
    Deployed,
    direct_fact,
    events_named,
    expect_revert,
)

pytestmark = pytest.mark.devnet

ROUTER = "StrategyRouterV2"


async def drift_of(deployed: Deployed, output: list[int]) -> int:
    current = await deployed.view(ROUTER, "get_allocation")
    new = output[6 : 6 + output[5]]
    return max(abs(a - b) for a, b in zip(current, new, strict=True))


async def test_same_inputs_within_the_interval_are_not_due(deployed: Deployed) -> None:
    await deployed.prove_and_execute()  # never executed: due
    output = await deployed.expected_output()
    verification = await deployed.register(direct_fact(output))
    await expect_revert(deployed.execute(output, verification), "rebalance not due")
    deployed.devnet.increase_time(HOUR)
    await deployed.execute(output, verification)  # the interval has passed
    assert await deployed.view(ROUTER, "get_epoch") == 2


async def test_only_the_owners_request_lifts_the_schedule(deployed: Deployed) -> None:
    await deployed.prove_and_execute()
    output = await deployed.expected_output()
    verification = await deployed.register(direct_fact(output))

    receipt = await deployed.invoke(deployed.keeper, ROUTER, "request_rebalance")
    (event,) = events_named(receipt, "RebalanceRequested", deployed.router_address)
    assert (event.keys[1], event.data) == (1, [deployed.keeper.address, 0])
    assert await deployed.view(ROUTER, "is_rebalance_requested") is False
    await expect_revert(deployed.execute(output, verification), "rebalance not due")
    await expect_revert(
        deployed.invoke(deployed.outsider, ROUTER, "request_rebalance"),
        "caller not keeper or owner",
    )

    receipt = await deployed.invoke(deployed.owner, ROUTER, "request_rebalance")
    (event,) = events_named(receipt, "RebalanceRequested", deployed.router_address)
    assert (event.keys[1], event.data) == (1, [deployed.owner.address, 1])
    assert await deployed.view(ROUTER, "is_rebalance_requested") is True
    await deployed.execute(output, verification)
    assert await deployed.view(ROUTER, "get_epoch") == 2
    assert await deployed.view(ROUTER, "is_rebalance_requested") is False  # the next epoch's


async def test_drift_is_due_from_the_threshold_on(deployed: Deployed) -> None:
    await deployed.prove_and_execute()
    metrics = await deployed.metrics()
    metrics[2]["apy_bps"] -= 50  # a small move of the allocation
    await deployed.set_metrics(metrics)
    output = await deployed.expected_output()
    drift = await drift_of(deployed, output)
    assert 0 < drift < 500, drift
    verification = await deployed.register(direct_fact(output))
    await expect_revert(deployed.execute(output, verification), "rebalance not due")
    await deployed.change("drift_threshold_bps", [drift + 1])
    await expect_revert(deployed.execute(output, verification), "rebalance not due")
    await deployed.change("drift_threshold_bps", [drift])  # drift >= threshold: due
    await deployed.execute(output, verification)
    assert await deployed.view(ROUTER, "get_epoch") == 2


async def test_a_large_move_is_due_at_once(deployed: Deployed) -> None:
    await deployed.prove_and_execute()
    metrics = await deployed.metrics()
    metrics[0]["apy_bps"] = 2000
    await deployed.set_metrics(metrics)
    output = await deployed.expected_output()
    assert await drift_of(deployed, output) >= 500
    await deployed.execute(output, await deployed.register(direct_fact(output)))
    assert await deployed.view(ROUTER, "get_epoch") == 2


async def test_a_new_protocol_count_is_maximal_drift(deployed: Deployed) -> None:
    await deployed.prove_and_execute()
    await deployed.change("drift_threshold_bps", [10000])
    metrics = await deployed.metrics()
    await deployed.set_metrics([*metrics, dict(metrics[0])])
    output = await deployed.expected_output()
    assert output[5] == 4
    await deployed.execute(output, await deployed.register(direct_fact(output)))
    assert await deployed.view(ROUTER, "get_allocation") == output[6:10]
