"""Fixtures: one starknet-devnet per session, the contracts built once, and a fresh
deployment (new addresses, same declared classes) for every test that needs clean state.

Accounts (devnet --seed 0 --accounts 3): 0 = owner/deployer/oracle, 1 = keeper and
DevFactRegistry registrar, 2 = an outsider with no role.

A deployment is config/deploy.devnet.toml (the router's constructor takes every value:
direct pin ('small', 'keccak_160_lsb', 'stone6', 'strict'), bootloaded pin
('recursive', ...), min_security_bits 96, governance_delay_s 0) with any value overridden.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from starknet_py.contract import ContractData
from starknet_py.hash.selector import get_selector_from_name
from starknet_py.net.account.account import Account
from starknet_py.net.client_errors import ClientError
from starknet_py.net.client_models import Call
from starknet_py.net.full_node_client import FullNodeClient
from starknet_py.net.signer.key_pair import KeyPair
from starknet_py.net.udc_deployer.deployer import Deployer
from starknet_py.serialization.factory import serializer_for_function_v1

from keeper.chain.codec import encode_short_string
from keeper.chain.reverts import decode_revert_reason
from keeper.devnet import deploy as devnet_deploy
from prover import facts, model
from tests.support.devnet import Devnet

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_PARAMS = ROOT / "config" / "deploy.devnet.toml"
# Stand-ins for the compiled allocation program's hashes: the gate only compares hashes.
PROGRAM_HASH = 0x1234_5678_9ABC_DEF0
CHILD_PROGRAM_HASH = 0x0FED_CBA9_8765_4321
TX_POLL_S = 0.05
HOUR = 3600
GRACE_S = 14 * 24 * HOUR  # GOVERNANCE_GRACE_S

pytestmark = pytest.mark.devnet


def short_string(text: str) -> int:
    return encode_short_string(text)


def decode_short_string(value: int) -> str:
    return value.to_bytes((value.bit_length() + 7) // 8, "big").decode("ascii")


def config(
    layout: str, hasher: str = "keccak_160_lsb", version: str = "stone6", memory: str = "strict"
) -> dict[str, int]:
    """An Integrity VerifierConfiguration as the ABI codec takes it."""
    return {
        "layout": short_string(layout),
        "hasher": short_string(hasher),
        "stone_version": short_string(version),
        "memory_verification": short_string(memory),
    }


DIRECT_PIN = config("small")
BOOTLOADED_PIN = config("recursive")
ZERO_CONFIG = {"layout": 0, "hasher": 0, "stone_version": 0, "memory_verification": 0}


class AbiCodec:
    """Calldata/result (de)serializers of one contract, from its ABI parsed once.

    starknet_py parses an ABI in about a second and its Contract does so on every
    construction; tests build calls from this session-wide codec instead.
    """

    def __init__(self, abi: list[Any]) -> None:
        parsed = ContractData.from_abi(0, abi).parsed_abi
        functions = dict(parsed.functions)
        for interface in parsed.interfaces.values():
            functions.update(interface.items)
        self._serializers = {name: serializer_for_function_v1(fn) for name, fn in functions.items()}

    def calldata(self, function: str, *args: Any) -> list[int]:
        return list(self._serializers[function].serialize(*args))

    def decode(self, function: str, raw: list[int]) -> Any:
        return self._serializers[function].deserialize(raw)


@pytest.fixture(scope="session")
def codecs(
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
) -> dict[str, AbiCodec]:
    return {name: AbiCodec(a.abi) for name, a in contract_artifacts.items()}


def events_named(receipt: Any, name: str, address: int | None = None) -> list[Any]:
    """The events ``name`` of a receipt (of one contract when ``address`` is given)."""
    key = get_selector_from_name(name)
    return [
        e
        for e in receipt.events
        if e.keys and e.keys[0] == key and (address is None or e.from_address == address)
    ]


def l2_gas(receipt: Any) -> int:
    """The whole transaction's L2 gas, from its receipt."""
    return int(receipt.execution_resources.l2_gas)


@dataclass
class Deployed:
    """A fresh deployment plus the three role accounts and typed contract handles."""

    devnet: Devnet
    deployment: devnet_deploy.Deployment
    report: devnet_deploy.Report
    client: FullNodeClient
    owner: Account
    keeper: Account
    outsider: Account
    codecs: dict[str, AbiCodec]

    @property
    def router_address(self) -> int:
        return self.deployment.address("StrategyRouterV2")

    @property
    def risk_engine_address(self) -> int:
        return self.deployment.address("RiskEngine")

    @property
    def registry_address(self) -> int:
        """The router's fact registry: the DevFactRegistry, or our IntegrityGuard (over
        Integrity's verifier)."""
        for name in ("DevFactRegistry", "IntegrityGuard"):
            if name in self.deployment.contracts:
                return self.deployment.address(name)
        raise AssertionError(f"no fact registry in {sorted(self.deployment.contracts)}")

    def call(self, name: str, function: str, *args: Any) -> Call:
        return Call(
            to_addr=self.deployment.address(name),
            selector=devnet_deploy.selector(function),
            calldata=self.codecs[name].calldata(function, *args),
        )

    async def view(self, name: str, function: str, *args: Any) -> Any:
        (value,) = self.codecs[name].decode(
            function, await self.client.call_contract(self.call(name, function, *args))
        )
        return value

    async def send(self, account: Account, calls: list[Call]) -> Any:
        """One multicall, waited for; a revert raises ClientError (from the fee estimate)."""
        sent = await account.execute_v3(calls=calls, auto_estimate=True)
        return await self.client.wait_for_tx(sent.transaction_hash, check_interval=TX_POLL_S)

    async def invoke(self, account: Account, name: str, function: str, *args: Any) -> Any:
        return await self.send(account, [self.call(name, function, *args)])

    async def allocation_inputs(self) -> model.AllocationInputs:
        """The inputs the keeper would read from chain for the router's current epoch."""
        metrics, params = await self.view("RiskEngine", "get_inputs")
        gov = await self.view("StrategyRouterV2", "get_governance_params")
        epoch = await self.view("StrategyRouterV2", "get_epoch")
        return model.AllocationInputs(
            router=self.router_address,
            epoch=epoch,
            protocols=tuple(model.ProtocolInputs(**dict(m)) for m in metrics),
            params=model.ModelParams(**dict(params)),
            max_single_bps=gov["max_single_bps"],
            min_diversification=gov["min_diversification"],
        )

    async def expected_output(self) -> list[int]:
        return model.expected_output(await self.allocation_inputs())

    async def set_metrics(self, metrics: list[dict[str, int]]) -> Any:
        """The oracle's (account 0's) complete snapshot."""
        return await self.invoke(self.owner, "RiskEngine", "set_all_metrics", metrics)

    async def metrics(self) -> list[dict[str, int]]:
        protocols, _ = await self.view("RiskEngine", "get_inputs")
        return [dict(m) for m in protocols]

    def register_call(
        self, fact_hash: int, security_bits: int = 96, verifier: dict[str, int] = DIRECT_PIN
    ) -> Call:
        return self.call("DevFactRegistry", "register_fact", fact_hash, security_bits, verifier)

    async def register(
        self, fact_hash: int, security_bits: int = 96, verifier: dict[str, int] = DIRECT_PIN
    ) -> int:
        """Register a verification; its hash (the last key of FactRegistered)."""
        call = self.register_call(fact_hash, security_bits, verifier)
        receipt = await self.send(self.keeper, [call])
        (event,) = events_named(receipt, "FactRegistered")
        return int(event.keys[-1])

    async def execute(
        self, output: list[int], verification_hash: int, account: Account | None = None
    ) -> Any:
        return await self.invoke(
            account or self.keeper, "StrategyRouterV2", "execute_allocation", output,
            verification_hash,
        )

    async def prove_and_execute(self) -> list[int]:
        """Register the current output's direct fact under the pin and execute it."""
        output = await self.expected_output()
        await self.execute(output, await self.register(direct_fact(output)))
        return output

    # The timelock of the router (default) or of RiskEngine (contract="RiskEngine").

    def change_calls(
        self, param: str, values: list[int], subject: int = 0, contract: str = "StrategyRouterV2"
    ) -> list[Call]:
        """propose + apply: one owner multicall when the delay is 0."""
        key = (short_string(param), subject)
        return [
            self.call(contract, "propose_change", *key, values),
            self.call(contract, "apply_change", *key),
        ]

    async def change(
        self, param: str, values: list[int], subject: int = 0, contract: str = "StrategyRouterV2"
    ) -> Any:
        return await self.send(self.owner, self.change_calls(param, values, subject, contract))

    async def propose(
        self,
        param: str,
        values: list[int],
        subject: int = 0,
        account: Account | None = None,
        contract: str = "StrategyRouterV2",
    ) -> Any:
        return await self.invoke(
            account or self.owner, contract, "propose_change", short_string(param), subject,
            values,
        )

    async def apply(
        self,
        param: str,
        subject: int = 0,
        account: Account | None = None,
        contract: str = "StrategyRouterV2",
    ) -> Any:
        return await self.invoke(
            account or self.owner, contract, "apply_change", short_string(param), subject
        )

    async def cancel(self, param: str, subject: int = 0, contract: str = "StrategyRouterV2") -> Any:
        return await self.invoke(
            self.owner, contract, "cancel_change", short_string(param), subject
        )

    async def pending(
        self, param: str, subject: int = 0, contract: str = "StrategyRouterV2"
    ) -> Any:
        return await self.view(contract, "get_pending_change", short_string(param), subject)

    async def set_model_params(self, params: dict[str, int]) -> Any:
        """RiskEngine's model, through its timelock (propose + apply: delay 0 only)."""
        values = [params[name] for name in devnet_deploy.MODEL_PARAM_NAMES]
        return await self.change("model_params", values, contract="RiskEngine")

    async def timestamp(self) -> int:
        return int((await self.client.get_block(block_number="latest")).timestamp)

    async def deploy_another(self, name: str, calldata: list[int]) -> tuple[int, Any]:
        """Another instance of contract ``name`` from raw constructor calldata: (address,
        receipt); a refused one raises ClientError with the constructor's reason."""
        class_hash = self.deployment.contracts[name]["class_hash"]
        call, address = Deployer().create_contract_deployment_raw(
            class_hash, salt=secrets.randbits(200), raw_calldata=calldata
        )
        return int(address), await self.send(self.owner, [call])


def make_account(devnet: Devnet, index: int, chain_id: int) -> Account:
    acc = devnet.accounts[index]
    return Account(
        address=acc.address,
        client=FullNodeClient(node_url=devnet.url),
        key_pair=KeyPair.from_private_key(acc.private_key),
        chain=chain_id,
    )


async def deploy_fresh(
    devnet: Devnet,
    artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
    out_path: Path | None = None,
    *,
    program_hash: int = PROGRAM_HASH,
    child_program_hash: int = CHILD_PROGRAM_HASH,
    pins: dict[str, tuple[str, ...]] | None = None,
    fact_registry: str = "dev",
    **router: int,
) -> Deployed:
    """A fresh deployment; the gate tests use stand-in program hashes, the keeper's
    end-to-end tests the real ones (``devnet_deploy.default_program_hashes()``).
    ``router`` overrides [router] values, ``pins`` the verifier pins (() = unset);
    ``fact_registry`` 'integrity' wires the router to our IntegrityGuard over Integrity's
    real verifier (Integrity's FactRegistry is deployed beside it)."""
    params = devnet_deploy.load_deploy_params(DEPLOY_PARAMS)
    params = replace(
        params, router={**params.router, **router}, pins={**params.pins, **(pins or {})}
    )
    deployment, report = await devnet_deploy.deploy_devnet(
        devnet.url,
        params,
        artifacts,
        out_path,
        program_hash=program_hash,
        child_program_hash=child_program_hash,
        salt=secrets.randbits(200),
        fact_registry=fact_registry,
    )
    client = FullNodeClient(node_url=devnet.url)
    chain_id = deployment.chain_id
    return Deployed(
        devnet=devnet,
        deployment=deployment,
        report=report,
        client=client,
        owner=make_account(devnet, 0, chain_id),
        keeper=make_account(devnet, 1, chain_id),
        outsider=make_account(devnet, 2, chain_id),
        codecs=codecs,
    )


@pytest.fixture
async def deployed(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
) -> Deployed:
    return await deploy_fresh(devnet, contract_artifacts, codecs)


async def expect_revert(action: Any, reason: str) -> None:
    """``action`` (an awaitable) must be refused with ``reason`` (a view's revert data
    comes hex-encoded: decoded as the keeper decodes it)."""
    with pytest.raises(ClientError) as caught:
        await action
    text = str(caught.value)
    assert reason in text or reason == decode_revert_reason(text), text[:800]


def direct_fact(output: list[int]) -> int:
    return facts.direct_fact(PROGRAM_HASH, output)


def bootloaded_fact(output: list[int]) -> int:
    return facts.bootloaded_fact(CHILD_PROGRAM_HASH, output)
