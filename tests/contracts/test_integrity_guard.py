"""IntegrityGuard's governance and views on devnet (its verification paths, with
Integrity's real verifier, are in tests/integrity/test_guard.py).

A guard here pins a stand-in verifier address (account 2): nothing is verified, only the
timelock, the ownership rules, the pin's validation and the router-facing views.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from starknet_py.net.account.account import Account
from starknet_py.net.client_models import Call
from starknet_py.net.udc_deployer.deployer import Deployer

from keeper.chain.deploy import GuardPin, guard_constructor_calldata
from keeper.devnet import deploy as devnet_deploy
from tests.contracts.conftest import (
    HOUR,
    TX_POLL_S,
    AbiCodec,
    expect_revert,
    make_account,
    short_string,
)
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet
GUARD = "IntegrityGuard"
GRACE_S = 14 * 24 * HOUR
PIN = ("small", "keccak_160_lsb", "stone6", "strict")


@dataclass
class Guard:
    devnet: Devnet
    address: int
    verifier: int
    codec: AbiCodec
    owner: Account
    other: Account  # a second account: new owner, or an outsider

    def call(self, function: str, *args: Any) -> Call:
        return Call(
            to_addr=self.address,
            selector=devnet_deploy.selector(function),
            calldata=self.codec.calldata(function, *args),
        )

    async def view(self, function: str, *args: Any) -> Any:
        raw = await self.owner.client.call_contract(self.call(function, *args))
        (value,) = self.codec.decode(function, raw)
        return value

    async def send(self, calls: list[Call], account: Account | None = None) -> Any:
        sender = account or self.owner
        sent = await sender.execute_v3(calls=calls, auto_estimate=True)
        return await sender.client.wait_for_tx(sent.transaction_hash, check_interval=TX_POLL_S)

    async def propose(self, param: str, values: list[int], account: Account | None = None) -> Any:
        return await self.send([self.call("propose_change", short_string(param), values)], account)

    async def apply(self, param: str, account: Account | None = None) -> Any:
        return await self.send([self.call("apply_change", short_string(param))], account)

    async def pin(self) -> tuple[int, list[int]]:
        raw = await self.owner.client.call_contract(self.call("get_pin"))
        return int(raw[0]), [int(x) for x in raw[1:]]


def pin_values(verifier: int, config: tuple[str, ...] = PIN) -> list[int]:
    return [verifier, *(short_string(t) for t in config)]


async def deploy_guard(
    devnet: Devnet, artifacts: dict[str, devnet_deploy.ContractArtifact], delay_s: int
) -> Guard:
    from starknet_py.net.full_node_client import FullNodeClient

    client = FullNodeClient(node_url=devnet.url)
    chain_id = int(await client.get_chain_id(), 16)
    version = str((await client.get_block(block_number="latest")).starknet_version)
    owner = make_account(devnet, 0, chain_id)
    artifact = artifacts[GUARD]
    class_hash = devnet_deploy.sierra_class_hash(artifact)
    if not await devnet_deploy.class_declared(client, class_hash):
        declare = await owner.sign_declare_v3(
            compiled_contract=artifact.sierra,
            compiled_class_hash=devnet_deploy.compiled_class_hash(artifact, version),
            auto_estimate=True,
        )
        sent = await client.declare(declare)
        await client.wait_for_tx(sent.transaction_hash, check_interval=TX_POLL_S)
    verifier = devnet.accounts[2].address
    calldata = guard_constructor_calldata(
        devnet.accounts[0].address, GuardPin(verifier, PIN), delay_s
    )
    call, address = Deployer().create_contract_deployment_raw(
        class_hash, salt=secrets.randbits(200), raw_calldata=calldata
    )
    await devnet_deploy.invoke(owner, [call])
    return Guard(
        devnet, int(address), verifier, AbiCodec(artifact.abi), owner,
        make_account(devnet, 1, chain_id),
    )


@pytest.fixture
async def guard(
    devnet: Devnet, contract_artifacts: dict[str, devnet_deploy.ContractArtifact]
) -> Guard:
    return await deploy_guard(devnet, contract_artifacts, HOUR)


async def test_the_constructor_pins_and_the_views_answer_like_a_registry(guard: Guard) -> None:
    assert await guard.pin() == (guard.verifier, pin_values(guard.verifier)[1:])
    assert await guard.view("get_governance_delay_s") == HOUR
    assert await guard.view("get_owner") == guard.owner.address
    preset = {"layout": short_string("small"), "hasher": short_string("keccak")}
    assert await guard.view("get_verifier_address", preset) == guard.verifier
    other = {"layout": short_string("recursive"), "hasher": short_string("keccak")}
    await expect_revert(guard.view("get_verifier_address", other), "VERIFIER_NOT_FOUND")
    assert await guard.view("get_verification", 0x1234) is None
    assert await guard.view("get_all_verifications_for_fact_hash", 0x1234) == []


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (pin_values(0), "verifier not an address"),
        (pin_values(5, (*PIN[:3], "cairo1")), "memory verification not strict"),
        (pin_values(5, (*PIN[:3], "relaxed")), "memory verification not strict"),
        (pin_values(5, ("small", "blake2s_160_lsb", *PIN[2:])), "hasher not supported"),
        (pin_values(5, (*PIN[:2], "stone7", "strict")), "stone version not supported"),
        (pin_values(5, ("", *PIN[1:])), "layout is zero"),
        (pin_values(5)[:4], "wrong number of values"),
    ],
)
async def test_a_pin_the_guard_cannot_check_is_refused(
    guard: Guard, values: list[int], reason: str
) -> None:
    await expect_revert(guard.propose("verifier", values), reason)


async def test_the_verifier_changes_only_after_the_delay(guard: Guard) -> None:
    new = pin_values(0x777)
    await expect_revert(guard.propose("verifier", new, guard.other), "caller is not owner")
    await guard.propose("verifier", new)
    await expect_revert(guard.apply("verifier"), "change not yet due")
    guard.devnet.increase_time(HOUR)
    await expect_revert(guard.apply("verifier", guard.other), "caller is not owner")
    await guard.apply("verifier")
    assert await guard.pin() == (0x777, new[1:])
    assert await guard.view("get_pending_change", short_string("verifier")) is None


async def test_raising_the_delay_delays_what_is_pending(guard: Guard) -> None:
    """A change proposed under a short delay waits the delay in force when it is applied."""
    await guard.propose("verifier", pin_values(0x888))
    await guard.propose("governance_delay_s", [10 * HOUR])
    guard.devnet.increase_time(HOUR)
    await guard.apply("governance_delay_s")  # now 10 h; 'verifier' was proposed 1 h ago
    await expect_revert(guard.apply("verifier"), "change not yet due")
    guard.devnet.increase_time(9 * HOUR + 60)
    await guard.apply("verifier")
    assert (await guard.pin())[0] == 0x888


async def test_a_change_expires_fourteen_days_after_it_was_due(guard: Guard) -> None:
    await guard.propose("verifier", pin_values(0x999))
    guard.devnet.increase_time(HOUR + GRACE_S + 60)
    await expect_revert(guard.apply("verifier"), "change expired")
    assert (await guard.pin())[0] == guard.verifier


async def test_accepting_ownership_cancels_the_previous_owners_proposals(guard: Guard) -> None:
    await guard.propose("verifier", pin_values(0xABC))
    await guard.propose("governance_delay_s", [0])
    await guard.send([guard.call("transfer_ownership", guard.other.address)])
    await expect_revert(
        guard.send([guard.call("accept_ownership")]), "caller is not pending owner"
    )
    receipt = await guard.send([guard.call("accept_ownership")], guard.other)
    cancelled = [
        e for e in receipt.events
        if e.keys[0] == devnet_deploy.selector("GovernanceChangeCancelled")
    ]
    assert sorted(e.keys[1] for e in cancelled) == sorted(
        [short_string("verifier"), short_string("governance_delay_s")]
    )
    assert await guard.view("get_owner") == guard.other.address
    guard.devnet.increase_time(HOUR)
    await expect_revert(guard.apply("verifier", guard.other), "no pending change")
    assert (await guard.pin())[0] == guard.verifier
