"""StrategyRouterV2.execute_allocation(output, verification_hash): the happy paths, one
test per refusal (contracts/README.md checks 1-17), on a real devnet with outputs from the
reference model, facts from prover.facts and verifications in DevFactRegistry (which
records any configuration, so tests can register what the router must refuse)."""

from __future__ import annotations

import pytest

from keeper.chain import VerifierConfig
from keeper.devnet import deploy as devnet_deploy
from keeper.engine.acceptance import verification_hash_of
from prover import facts
from tests.contracts.conftest import (
    BOOTLOADED_PIN,
    DIRECT_PIN,
    ZERO_CONFIG,
    AbiCodec,
    Deployed,
    bootloaded_fact,
    config,
    decode_short_string,
    deploy_fresh,
    direct_fact,
    events_named,
    expect_revert,
    l2_gas,
)
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet

ROUTER = "StrategyRouterV2"


async def assert_refused(
    deployed: Deployed, output: list[int], verification: int, reason: str
) -> None:
    await expect_revert(deployed.execute(output, verification), reason)
    assert await deployed.view(ROUTER, "get_epoch") == 0


# --- accepted ---------------------------------------------------------------------------------


async def test_a_pinned_direct_verification_executes(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    n = output[5]
    fact = direct_fact(output)
    verification = await deployed.register(fact)
    # The registry's key is Integrity's formula, as the keeper computes it.
    pin = VerifierConfig("small", "keccak_160_lsb", "stone6", "strict")
    assert verification == verification_hash_of(fact, pin, 96)
    stored = await deployed.view("DevFactRegistry", "get_verification", verification)
    assert (stored["fact_hash"], stored["security_bits"]) == (fact, 96)

    receipt = await deployed.execute(output, verification)

    assert await deployed.view(ROUTER, "get_epoch") == 1
    assert await deployed.view(ROUTER, "get_allocation") == output[6 : 6 + n]
    assert await deployed.view(ROUTER, "is_fact_consumed", fact) is True
    assert await deployed.view(ROUTER, "last_execution_timestamp") > 0
    (event,) = events_named(receipt, "AllocationExecuted", deployed.router_address)
    assert event.keys[1] == 0  # the executed epoch
    assert event.data == [fact, n, *output[6 : 6 + n], int.from_bytes(b"direct", "big")]


async def test_a_pinned_bootloaded_verification_executes(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    fact = bootloaded_fact(output)
    receipt = await deployed.execute(output, await deployed.register(fact, 96, BOOTLOADED_PIN))
    (event,) = events_named(receipt, "AllocationExecuted", deployed.router_address)
    assert decode_short_string(event.data[-1]) == "bootloaded"
    assert event.data[0] == fact
    assert await deployed.view(ROUTER, "is_fact_consumed", fact) is True


async def test_more_bits_than_required_are_accepted(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await deployed.execute(output, await deployed.register(direct_fact(output), 256))
    assert await deployed.view(ROUTER, "get_epoch") == 1


# --- refused: the verification ---------------------------------------------------------------


async def test_an_unknown_verification_is_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    await assert_refused(deployed, output, 0x1234, "verification not found")


@pytest.mark.parametrize(
    "verifier",
    [
        config("small", memory="relaxed"),
        config("small", memory="cairo1"),
        config("recursive"),  # another layout (the bootloaded path's pin)
        config("small", version="stone5"),
        config("small", hasher="keccak_248_lsb"),
        ZERO_CONFIG,
    ],
    ids=["relaxed", "cairo1", "other-layout", "stone5", "other-hasher", "zero-config"],
)
async def test_a_configuration_other_than_the_pin_is_refused(
    deployed: Deployed, verifier: dict[str, int]
) -> None:
    output = await deployed.expected_output()
    verification = await deployed.register(direct_fact(output), 128, verifier)
    await assert_refused(deployed, output, verification, "verifier config not pinned")


async def test_the_bootloaded_fact_under_the_direct_pin_is_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    verification = await deployed.register(bootloaded_fact(output), 128, DIRECT_PIN)
    await assert_refused(deployed, output, verification, "verifier config not pinned")


async def test_too_few_security_bits_are_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    verification = await deployed.register(direct_fact(output), 95)
    await assert_refused(deployed, output, verification, "fact security bits too low")


async def test_a_verification_of_another_fact_is_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    other = list(output)
    other[6], other[7] = other[7], other[6]  # another allocation, same header
    verification = await deployed.register(direct_fact(other))
    await assert_refused(deployed, output, verification, "verification for other fact")
    # ...and a fact of another program.
    verification = await deployed.register(facts.direct_fact(0xBAD, output))
    await assert_refused(deployed, output, verification, "verification for other fact")


async def test_a_zero_pin_accepts_nothing(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
) -> None:
    closed = await deploy_fresh(
        devnet, contract_artifacts, codecs, pins={"bootloaded_verifier": ()}
    )
    output = await closed.expected_output()
    verification = await closed.register(bootloaded_fact(output), 128, ZERO_CONFIG)
    await assert_refused(closed, output, verification, "verifier config not pinned")


async def test_no_program_hash_accepts_nothing(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
) -> None:
    closed = await deploy_fresh(
        devnet, contract_artifacts, codecs, program_hash=0, child_program_hash=0
    )
    output = await closed.expected_output()
    verification = await closed.register(direct_fact(output))
    await assert_refused(closed, output, verification, "no program hash accepted")


async def test_a_verification_in_another_registry_does_not_count(
    deployed: Deployed,
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
) -> None:
    """The router reads only the registry governance stored (no caller-supplied one)."""
    other = await deploy_fresh(devnet, contract_artifacts, codecs)
    output = await deployed.expected_output()
    verification = await other.register(direct_fact(output))
    await assert_refused(deployed, output, verification, "verification not found")


# --- refused: the output ----------------------------------------------------------------------


async def test_a_replayed_fact_is_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    verification = await deployed.register(direct_fact(output))
    await deployed.execute(output, verification)
    await expect_revert(deployed.execute(output, verification), "fact already consumed")
    assert await deployed.view(ROUTER, "get_epoch") == 1


async def test_another_epoch_or_router_is_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    later = [output[0], 1, *output[2:]]
    await assert_refused(
        deployed, later, await deployed.register(direct_fact(later)), "output epoch != current"
    )
    foreign = [deployed.risk_engine_address, *output[1:]]
    await assert_refused(
        deployed, foreign, await deployed.register(direct_fact(foreign)), "output for another"
    )


async def test_stale_inputs_are_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    verification = await deployed.register(direct_fact(output))
    metrics = await deployed.metrics()
    metrics[0]["apy_bps"] += 1
    await deployed.set_metrics(metrics)
    await assert_refused(deployed, output, verification, "stale inputs commitment")


async def test_constraints_other_than_governance_are_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    for index, reason in ((3, "max_single != governance"), (4, "min_div != governance")):
        changed = list(output)
        changed[index] -= 1
        verification = await deployed.register(direct_fact(changed))
        await assert_refused(deployed, changed, verification, reason)


async def test_a_governance_change_applied_mid_job_makes_the_proof_stale(
    deployed: Deployed,
) -> None:
    output = await deployed.expected_output()  # proved under max_single 5000
    verification = await deployed.register(direct_fact(output))
    await deployed.change("max_single_bps", [6000])
    await assert_refused(deployed, output, verification, "max_single != governance")
    again = await deployed.expected_output()  # proved again under the applied value
    assert again[3] == 6000
    await deployed.execute(again, await deployed.register(direct_fact(again)))
    assert await deployed.view(ROUTER, "get_epoch") == 1


async def test_allocations_breaking_the_constraints_are_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    over = output[3] + 1
    rest = 10000 - over
    for allocation, reason in (
        ([over, rest // 2, rest - rest // 2], "allocation above max_single"),
        ([3000, 3000, 3000], "allocation sum != 10000"),
    ):
        changed = [*output[:6], *allocation, *output[9:]]
        verification = await deployed.register(direct_fact(changed))
        await assert_refused(deployed, changed, verification, reason)
    await deployed.change("min_diversification", [3])
    output = await deployed.expected_output()
    changed = [*output[:6], output[3], 10000 - output[3] - 500, 500, *output[9:]]
    verification = await deployed.register(direct_fact(changed))
    await assert_refused(deployed, changed, verification, "diversification below min")


async def test_malformed_outputs_are_refused(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    short = [*output[:5], 2, 5000, 5000, 1, 1]  # n = 2, well formed, but RiskEngine has 3
    await assert_refused(
        deployed, short, await deployed.register(direct_fact(short)), "n != RiskEngine count"
    )
    await assert_refused(deployed, output[:-1], 0x1, "output length != 6 + 2n")
    await assert_refused(deployed, output[:5], 0x1, "output too short")
    await assert_refused(deployed, [*output[:5], 17], 0x1, "protocol count out of range")


async def test_only_a_keeper_executes(deployed: Deployed) -> None:
    output = await deployed.expected_output()
    verification = await deployed.register(direct_fact(output))
    await expect_revert(
        deployed.execute(output, verification, account=deployed.outsider), "caller is not keeper"
    )


# --- cost -------------------------------------------------------------------------------------


async def _gate_gas(deployed: Deployed, others: int) -> int:
    """L2 gas of the first execution when the fact has ``others`` other verifications,
    registered before the accepted one (another layout, relaxed memory, too few bits)."""
    output = await deployed.expected_output()
    fact = direct_fact(output)
    weak = [
        deployed.register_call(
            fact, 20 + i, config("small", memory="relaxed") if i % 2 else config("recursive")
        )
        for i in range(others)
    ]
    if weak:
        await deployed.send(deployed.keeper, weak)
    verification = await deployed.register(fact)
    listed = await deployed.view("DevFactRegistry", "get_all_verifications_for_fact_hash", fact)
    assert len(listed) == others + 1
    return l2_gas(await deployed.execute(output, verification))


async def test_the_gate_costs_the_same_however_many_other_verifications_exist(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
) -> None:
    gas = {}
    for others in (0, 1, 50):
        fresh = await deploy_fresh(devnet, contract_artifacts, codecs)
        gas[others] = await _gate_gas(fresh, others)
    assert gas[0] == gas[1] == gas[50], gas
