"""Fixtures for the chain client tests: one starknet-devnet per session, the contracts
built once, and a fresh deployment (keeper = account 1, also the DevFactRegistry
registrar) for every test that needs one."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starknet_py.net.account.account import Account
from starknet_py.net.full_node_client import FullNodeClient
from starknet_py.net.signer.key_pair import KeyPair

from keeper.chain import ChainClient
from keeper.core.config import ChainConfig, Secrets
from keeper.devnet import deploy as devnet_deploy

ROOT = Path(__file__).resolve().parents[2]
# `tests.support.devnet` and `tests.chain.fake_rpc` are imported as modules of the repository.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.devnet import Devnet  # noqa: E402

DEPLOY_PARAMS = ROOT / "config" / "deploy.devnet.toml"
# Stand-ins for the allocation program's hashes: the router only compares hashes.
PROGRAM_HASH = 0x0DE7_0000_0000_0000_0000_0000_0000_0001
CHILD_PROGRAM_HASH = 0x0DE7_0000_0000_0000_0000_0000_0000_0002
# devnet --seed 0 --accounts 3, roles from config/deploy.devnet.toml.
OWNER, KEEPER, OUTSIDER = 0, 1, 2
POLL_S = 0.05


@dataclass
class DeployedChain:
    """A fresh deployment on the session devnet, and clients for its accounts."""

    devnet: Devnet
    deployment: devnet_deploy.Deployment

    @property
    def router(self) -> int:
        return self.deployment.address("StrategyRouterV2")

    @property
    def risk_engine(self) -> int:
        return self.deployment.address("RiskEngine")

    @property
    def registry(self) -> int:
        return self.deployment.address("DevFactRegistry")

    def config(self, account: int = KEEPER, **overrides: Any) -> ChainConfig:
        fields: dict[str, Any] = {
            "rpc_url": self.devnet.url,
            "chain_id": hex(self.deployment.chain_id),
            "router_address": hex(self.router),
            "risk_engine_address": hex(self.risk_engine),
            "account_address": hex(self.devnet.accounts[account].address),
            "receipt_timeout_s": 30.0,
        }
        fields.update(overrides)
        return ChainConfig(**fields)

    def client(self, account: int = KEEPER, **overrides: Any) -> ChainClient:
        key = SecretStr(hex(self.devnet.accounts[account].private_key))
        return ChainClient(
            self.config(account, **overrides),
            Secrets(account_private_key=key),
            poll_interval_s=POLL_S,
        )

    def account(self, index: int) -> Account:
        """A plain starknet-py account, to act behind the keeper client's back."""
        acc = self.devnet.accounts[index]
        return Account(
            address=acc.address,
            client=FullNodeClient(node_url=self.devnet.url),
            key_pair=KeyPair.from_private_key(acc.private_key),
            chain=self.deployment.chain_id,
        )

    async def nonce(self, index: int = KEEPER) -> int:
        client = FullNodeClient(node_url=self.devnet.url)
        return int(await client.get_contract_nonce(self.devnet.accounts[index].address))

    async def invoke(self, index: int, calls: list[Any]) -> None:
        await devnet_deploy.invoke(self.account(index), calls)


async def deploy_chain(
    devnet: Devnet,
    artifacts: dict[str, devnet_deploy.ContractArtifact],
    *,
    pins: dict[str, tuple[str, ...]] | None = None,
    **router: int,
) -> DeployedChain:
    """A fresh deployment of config/deploy.devnet.toml with ``router`` values and verifier
    ``pins`` overridden."""
    params = devnet_deploy.load_deploy_params(DEPLOY_PARAMS)
    params = replace(
        params, router={**params.router, **router}, pins={**params.pins, **(pins or {})}
    )
    deployment, _ = await devnet_deploy.deploy_devnet(
        devnet.url,
        params,
        artifacts,
        None,
        program_hash=PROGRAM_HASH,
        child_program_hash=CHILD_PROGRAM_HASH,
    )
    return DeployedChain(devnet, deployment)


@pytest.fixture
async def chain(
    devnet: Devnet, contract_artifacts: dict[str, devnet_deploy.ContractArtifact]
) -> DeployedChain:
    return await deploy_chain(devnet, contract_artifacts)
