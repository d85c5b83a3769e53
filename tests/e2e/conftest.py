"""End-to-end fixtures: the session devnet, contracts and ABI codecs of the contract
tests, and deployments that accept the real compiled allocation program (so the keeper's
proofs pass the router's gate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.devnet import deploy as devnet_deploy
from tests.contracts import conftest as _contracts
from tests.contracts.conftest import AbiCodec, Deployed, deploy_fresh
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet

codecs = _contracts.codecs  # the contract tests' session ABI codecs


@pytest.fixture(scope="session")
def program_hashes() -> tuple[int, int]:
    return devnet_deploy.default_program_hashes()


@pytest.fixture
async def deployed(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
    program_hashes: tuple[int, int],
) -> Deployed:
    direct, child = program_hashes
    return await deploy_fresh(
        devnet, contract_artifacts, codecs, program_hash=direct, child_program_hash=child
    )


@pytest.fixture
def keeper_dir(tmp_path: Path) -> Path:
    return tmp_path / "keeper"
