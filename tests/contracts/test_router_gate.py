"""StrategyRouterV2.execute_allocation: the happy paths and one test per gate rejection,
on a real devnet with outputs from the reference model and facts from prover.facts."""

from __future__ import annotations

import pytest
from starknet_py.hash.selector import get_selector_from_name
from starknet_py.net.client_errors import ClientError

from keeper.devnet import deploy as devnet_deploy
from prover import facts
from tests.contracts.conftest import (
    AbiCodec,
    Deployed,
    bootloaded_fact,
    decode_short_string,
    deploy_fresh,
    direct_fact,
)
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet


async def assert_rejected(deployed: Deployed, output: list[int], reason: str) -> None:
    with pytest.raises(ClientError) as info:
        await deployed.execute(output)
    assert reason in str(info.value), str(info.value)
    (epoch,) = await deployed.view("StrategyRouterV2", "get_epoch")
    assert epoch == 0


def allocation_executed_events(deployed: Deployed, receipt: object) -> list[object]:
    key = get_selector_from_name("AllocationExecuted")
    return [
        e
        for e in receipt.events  # type: ignore[attr-defined]
        if e.from_address == deployed.router_address and e.keys[0] == key
    ]


async def test_happy_path_direct_fact(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    n = output[5]
    fact = direct_fact(output)
    await deployed.register(fact)

    receipt = await deployed.execute(output)

    (epoch,) = await deployed.view("StrategyRouterV2", "get_epoch")
    (allocation,) = await deployed.view("StrategyRouterV2", "get_allocation")
    (consumed,) = await deployed.view("StrategyRouterV2", "is_fact_consumed", fact)
    (timestamp,) = await deployed.view("StrategyRouterV2", "last_execution_timestamp")
    assert epoch == 1
    assert allocation == output[6 : 6 + n]
    assert consumed is True
    assert timestamp > 0
    (event,) = allocation_executed_events(deployed, receipt)
    assert event.keys[1] == 0  # type: ignore[attr-defined]  # the executed epoch
    assert event.data == [  # type: ignore[attr-defined]
        fact,
        n,
        *output[6 : 6 + n],
        int.from_bytes(b"direct", "big"),
    ]


async def test_happy_path_bootloaded_fact(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    fact = bootloaded_fact(output)
    await deployed.register(fact)

    receipt = await deployed.execute(output)

    (event,) = allocation_executed_events(deployed, receipt)
    assert decode_short_string(event.data[-1]) == "bootloaded"  # type: ignore[attr-defined]
    assert event.data[0] == fact  # type: ignore[attr-defined]
    (consumed,) = await deployed.view("StrategyRouterV2", "is_fact_consumed", fact)
    assert consumed is True


async def test_second_epoch_executes_after_first(deployed: Deployed) -> None:
    first = await deployed.expected_output()
    await deployed.register(direct_fact(first))
    await deployed.execute(first)

    second = await deployed.expected_output()
    assert second[1] == 1
    await deployed.register(direct_fact(second))
    await deployed.execute(second)

    (epoch,) = await deployed.view("StrategyRouterV2", "get_epoch")
    assert epoch == 2


async def test_rejects_fact_of_another_program(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await deployed.register(facts.direct_fact(0xBAD, output))
    await deployed.register(facts.bootloaded_fact(0xBAD, output))
    await assert_rejected(deployed, output, "fact not registered")


async def test_rejects_wrong_epoch(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    output[1] = 1
    await deployed.register(direct_fact(output))
    await assert_rejected(deployed, output, "output epoch != current epoch")


async def test_rejects_output_for_another_router(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    output[0] = deployed.risk_engine_address
    await deployed.register(direct_fact(output))
    await assert_rejected(deployed, output, "output for another router")


async def test_rejects_stale_inputs(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await deployed.register(direct_fact(output))
    (metrics,) = await deployed.view("RiskEngine", "get_metrics", 0)
    changed = dict(metrics)
    changed["apy_bps"] += 1
    await deployed.invoke(deployed.owner, "RiskEngine", "set_metrics", 0, changed)
    await assert_rejected(deployed, output, "stale inputs commitment")


async def test_rejects_replayed_fact(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await deployed.register(direct_fact(output))
    await deployed.execute(output)

    with pytest.raises(ClientError) as info:
        await deployed.execute(output)
    assert "fact already consumed" in str(info.value)
    (epoch,) = await deployed.view("StrategyRouterV2", "get_epoch")
    assert epoch == 1


async def test_rejects_unregistered_fact(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await assert_rejected(deployed, output, "fact not registered")


async def test_rejects_too_few_security_bits(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await deployed.register(direct_fact(output), security_bits=95)
    await assert_rejected(deployed, output, "fact security bits too low")


async def test_accepts_when_one_verification_has_enough_bits(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await deployed.register(direct_fact(output), security_bits=80)
    await deployed.register(direct_fact(output), security_bits=100)
    await deployed.execute(output)
    (epoch,) = await deployed.view("StrategyRouterV2", "get_epoch")
    assert epoch == 1


async def test_rejects_allocation_above_max_single(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    over = output[3] + 1
    output[6:9] = [over, (10000 - over) // 2, 10000 - over - (10000 - over) // 2]
    await deployed.register(direct_fact(output))
    await assert_rejected(deployed, output, "allocation above max_single")


async def test_rejects_diversification_below_min(deployed: Deployed) -> None:
    await deployed.invoke(deployed.owner, "StrategyRouterV2", "set_min_diversification", 3)
    output = await deployed.expected_output()
    assert output[4] == 3
    output[6:9] = [output[3], 10000 - output[3] - 500, 500]
    assert output[7] >= 1000
    await deployed.register(direct_fact(output))
    await assert_rejected(deployed, output, "diversification below min")


async def test_rejects_bad_sum(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    output[6:9] = [3000, 3000, 3000]
    await deployed.register(direct_fact(output))
    await assert_rejected(deployed, output, "allocation sum != 10000")


async def test_rejects_wrong_protocol_count(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    # n = 2 with a well-formed 6 + 2n body: allocation (5000, 5000), risks (1, 1).
    short = [*output[:5], 2, 5000, 5000, 1, 1]
    await deployed.register(direct_fact(short))
    await assert_rejected(deployed, short, "n != RiskEngine count")


async def test_rejects_max_single_other_than_governance(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    output[3] -= 1
    await deployed.register(direct_fact(output))
    await assert_rejected(deployed, output, "max_single != governance")


async def test_rejects_min_div_other_than_governance(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    output[4] = 1
    await deployed.register(direct_fact(output))
    await assert_rejected(deployed, output, "min_div != governance")


async def test_rejects_malformed_output_length(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await assert_rejected(deployed, output[:-1], "output length != 6 + 2n")


async def test_rejects_non_keeper_caller(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await deployed.register(direct_fact(output))
    with pytest.raises(ClientError) as info:
        await deployed.execute(output, account=deployed.outsider)
    assert "caller is not keeper" in str(info.value)


async def test_fact_in_another_registry_does_not_count(
    deployed: Deployed,
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
) -> None:
    """The router reads only the registry governance stored (no caller-supplied one)."""
    other = await deploy_fresh(devnet, contract_artifacts, codecs)
    output = await deployed.expected_output()
    await other.register(direct_fact(output))
    await assert_rejected(deployed, output, "fact not registered")
