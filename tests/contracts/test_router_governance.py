"""Roles and governance: who may change what, and the events that say so."""

from __future__ import annotations

import pytest
from starknet_py.hash.selector import get_selector_from_name
from starknet_py.net.client_errors import ClientError

from tests.contracts.conftest import (
    Deployed,
    decode_short_string,
    short_string,
)

pytestmark = pytest.mark.devnet


def router_events(deployed: Deployed, receipt: object, name: str) -> list[object]:
    key = get_selector_from_name(name)
    return [
        e
        for e in receipt.events  # type: ignore[attr-defined]
        if e.from_address == deployed.router_address and e.keys[0] == key
    ]


@pytest.mark.parametrize(
    ("setter", "param", "new"),
    [
        ("set_max_single_bps", "max_single_bps", 4000),
        ("set_min_diversification", "min_diversification", 3),
        ("set_drift_threshold_bps", "drift_threshold_bps", 250),
        ("set_rebalance_interval", "rebalance_interval_s", 60),
        ("set_min_security_bits", "min_security_bits", 128),
        ("set_program_hash", "program_hash", 0xABC),
        ("set_child_program_hash", "child_program_hash", 0),
    ],
)
async def test_governance_change_emits_param_old_new(
    deployed: Deployed, setter: str, param: str, new: int
) -> None:
    (before,) = await deployed.view("StrategyRouterV2", "get_governance_params")
    old = before[param]
    assert old != new

    receipt = await deployed.invoke(deployed.owner, "StrategyRouterV2", setter, new)

    (event,) = router_events(deployed, receipt, "GovernanceParamsUpdated")
    assert decode_short_string(event.keys[1]) == param  # type: ignore[attr-defined]
    assert event.data == [old, new]  # type: ignore[attr-defined]
    (gov,) = await deployed.view("StrategyRouterV2", "get_governance_params")
    assert gov[param] == new


async def test_address_parameters_are_reported_as_felts(deployed: Deployed) -> None:
    new_registry = deployed.risk_engine_address  # any non-zero address will do
    receipt = await deployed.invoke(
        deployed.owner, "StrategyRouterV2", "set_fact_registry", new_registry
    )
    (event,) = router_events(deployed, receipt, "GovernanceParamsUpdated")
    assert event.keys[1] == short_string("fact_registry")  # type: ignore[attr-defined]
    assert event.data == [deployed.registry_address, new_registry]  # type: ignore[attr-defined]


async def test_governance_rejects_out_of_range_values(deployed: Deployed) -> None:
    with pytest.raises(ClientError) as info:
        await deployed.invoke(deployed.owner, "StrategyRouterV2", "set_max_single_bps", 10001)
    assert "max_single not in 1..10000" in str(info.value)
    with pytest.raises(ClientError) as info:
        await deployed.invoke(deployed.owner, "StrategyRouterV2", "set_min_diversification", 17)
    assert "min_div not in 0..16" in str(info.value)


@pytest.mark.parametrize(
    ("setter", "value"),
    [
        ("set_max_single_bps", 5000),
        ("set_program_hash", 1),
        ("set_min_security_bits", 1),
    ],
)
async def test_non_owner_cannot_change_governance(
    deployed: Deployed, setter: str, value: int
) -> None:
    with pytest.raises(ClientError) as info:
        await deployed.invoke(deployed.keeper, "StrategyRouterV2", setter, value)
    assert "caller is not owner" in str(info.value)


async def test_non_owner_cannot_add_keeper(deployed: Deployed) -> None:
    with pytest.raises(ClientError) as info:
        await deployed.invoke(
            deployed.outsider, "StrategyRouterV2", "set_keeper", deployed.outsider.address, True
        )
    assert "caller is not owner" in str(info.value)
    (is_keeper,) = await deployed.view(
        "StrategyRouterV2", "is_keeper", deployed.outsider.address
    )
    assert is_keeper is False


async def test_non_owner_cannot_set_model_params(deployed: Deployed) -> None:
    (params,) = await deployed.view("RiskEngine", "get_model_params")
    with pytest.raises(ClientError) as info:
        await deployed.invoke(deployed.keeper, "RiskEngine", "set_model_params", dict(params))
    assert "caller is not owner" in str(info.value)


async def test_non_oracle_cannot_write_metrics(deployed: Deployed) -> None:
    (metrics,) = await deployed.view("RiskEngine", "get_metrics", 0)
    with pytest.raises(ClientError) as info:
        await deployed.invoke(deployed.keeper, "RiskEngine", "set_metrics", 0, dict(metrics))
    assert "caller is not oracle" in str(info.value)
    with pytest.raises(ClientError) as info:
        await deployed.invoke(
            deployed.outsider, "RiskEngine", "set_all_metrics", [dict(metrics)]
        )
    assert "caller is not oracle" in str(info.value)


async def test_request_rebalance_emits_epoch_and_requester(deployed: Deployed) -> None:
    receipt = await deployed.invoke(deployed.keeper, "StrategyRouterV2", "request_rebalance")
    (event,) = router_events(deployed, receipt, "RebalanceRequested")
    assert event.keys[1] == 0  # type: ignore[attr-defined]
    assert event.data == [deployed.keeper.address]  # type: ignore[attr-defined]


async def test_outsider_cannot_request_rebalance(deployed: Deployed) -> None:
    with pytest.raises(ClientError) as info:
        await deployed.invoke(deployed.outsider, "StrategyRouterV2", "request_rebalance")
    assert "caller not keeper or owner" in str(info.value)


async def test_non_registrar_cannot_register_fact(deployed: Deployed) -> None:
    config = {k: 1 for k in ("layout", "hasher", "stone_version", "memory_verification")}
    with pytest.raises(ClientError) as info:
        await deployed.invoke(
            deployed.outsider, "DevFactRegistry", "register_fact", 0x1234, 128, config
        )
    assert "caller is not registrar" in str(info.value)
