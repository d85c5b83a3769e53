"""Fixtures: one starknet-devnet per session, the contracts built once, and a fresh
deployment (new addresses, same declared classes) for every test that needs clean state.

Accounts (devnet --seed 0 --accounts 3): 0 = owner/deployer/oracle, 1 = keeper and
DevFactRegistry registrar, 2 = an outsider with no role.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starknet_py.contract import ContractData
from starknet_py.net.account.account import Account
from starknet_py.net.client_errors import ClientError
from starknet_py.net.client_models import Call
from starknet_py.net.full_node_client import FullNodeClient
from starknet_py.net.signer.key_pair import KeyPair
from starknet_py.serialization.factory import serializer_for_function_v1

from keeper.devnet import deploy as devnet_deploy
from prover import facts, model
from tests.support.devnet import Devnet

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_PARAMS = ROOT / "config" / "deploy.devnet.toml"
# Stand-ins for the compiled allocation program's hashes: the gate only compares hashes.
PROGRAM_HASH = 0x1234_5678_9ABC_DEF0
CHILD_PROGRAM_HASH = 0x0FED_CBA9_8765_4321
VERIFIER_CONFIG = ("small", "keccak_160_lsb", "stone6", "strict")
TX_POLL_S = 0.05

pytestmark = pytest.mark.devnet


def short_string(text: str) -> int:
    return int.from_bytes(text.encode("ascii"), "big")


def decode_short_string(value: int) -> str:
    return value.to_bytes((value.bit_length() + 7) // 8, "big").decode("ascii")


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
        return self.deployment.address("DevFactRegistry")

    async def view(self, name: str, function: str, *args: Any) -> Any:
        codec = self.codecs[name]
        call = Call(
            to_addr=self.deployment.address(name),
            selector=devnet_deploy.selector(function),
            calldata=codec.calldata(function, *args),
        )
        return codec.decode(function, await self.client.call_contract(call))

    async def invoke(self, account: Account, name: str, function: str, *args: Any) -> Any:
        """Invoke and wait; a revert raises ClientError (from the fee estimate)."""
        call = Call(
            to_addr=self.deployment.address(name),
            selector=devnet_deploy.selector(function),
            calldata=self.codecs[name].calldata(function, *args),
        )
        sent = await account.execute_v3(calls=[call], auto_estimate=True)
        return await self.client.wait_for_tx(sent.transaction_hash, check_interval=TX_POLL_S)

    async def allocation_inputs(self) -> model.AllocationInputs:
        """The inputs the keeper would read from chain for the router's current epoch."""
        ((metrics, params),) = await self.view("RiskEngine", "get_inputs")
        (gov,) = await self.view("StrategyRouterV2", "get_governance_params")
        (epoch,) = await self.view("StrategyRouterV2", "get_epoch")
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

    async def register(self, fact_hash: int, security_bits: int = 96) -> Any:
        layout, hasher, version, memory = VERIFIER_CONFIG
        config = {
            "layout": short_string(layout),
            "hasher": short_string(hasher),
            "stone_version": short_string(version),
            "memory_verification": short_string(memory),
        }
        return await self.invoke(
            self.keeper, "DevFactRegistry", "register_fact", fact_hash, security_bits, config
        )

    async def execute(self, output: list[int], account: Account | None = None) -> Any:
        return await self.invoke(
            account or self.keeper, "StrategyRouterV2", "execute_allocation", output
        )


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
) -> Deployed:
    """A fresh deployment; the gate tests use stand-in program hashes, the keeper's
    end-to-end tests the real ones (``devnet_deploy.default_program_hashes()``)."""
    params = devnet_deploy.load_deploy_params(DEPLOY_PARAMS)
    deployment, report = await devnet_deploy.deploy_devnet(
        devnet.url,
        params,
        artifacts,
        out_path,
        program_hash=program_hash,
        child_program_hash=child_program_hash,
        salt=secrets.randbits(200),
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


def revert_reason(exc: ClientError) -> str:
    return str(exc)


def direct_fact(output: list[int]) -> int:
    return facts.direct_fact(PROGRAM_HASH, output)


def bootloaded_fact(output: list[int]) -> int:
    return facts.bootloaded_fact(CHILD_PROGRAM_HASH, output)
