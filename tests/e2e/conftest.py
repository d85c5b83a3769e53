"""End-to-end fixtures: the session devnet, contracts and ABI codecs of the contract
tests, and deployments that accept the real compiled allocation program (so the keeper's
proofs pass the router's gate): ``deployed`` trusts the DevFactRegistry (the dev prover),
``deployed_with_integrity`` Integrity's real FactRegistry and verifier (Stone proofs;
skipped with the reason when Integrity's compiled classes are absent)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from keeper.devnet import deploy as devnet_deploy
from prover.stone_tools import locate_stone
from tests.contracts import conftest as _contracts
from tests.contracts.conftest import AbiCodec, Deployed, deploy_fresh
from tests.support.devnet import Devnet
from tests.support.integrity import classes_skip_reason

pytestmark = pytest.mark.devnet

codecs = _contracts.codecs  # the contract tests' session ABI codecs


@pytest.fixture(scope="session")
def program_hashes() -> tuple[int, int]:
    return devnet_deploy.default_program_hashes()


@pytest.fixture
async def deployed(deploy_real: DeployReal) -> Deployed:
    return await deploy_real()


@pytest.fixture
def keeper_dir(tmp_path: Path) -> Path:
    return tmp_path / "keeper"


@pytest.fixture
def stone_env() -> dict[str, str]:
    """The real Stone's binaries for the keeper; asked for first, so a machine without
    Stone skips before anything is deployed."""
    found = locate_stone(os.environ)
    if found is None:
        pytest.skip(
            "no real Stone: `make setup` installs it from ../shared/stone/bin (or "
            "STONE_DIST); or set KEEPER_PROVER__STONE_PROVER_PATH and …_VERIFIER_PATH"
        )
    return {
        "KEEPER_PROVER__STONE_PROVER_PATH": str(found.prover),
        "KEEPER_PROVER__STONE_VERIFIER_PATH": str(found.verifier),
    }


DeployReal = Callable[..., Awaitable[Deployed]]


@pytest.fixture
def deploy_real(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
    program_hashes: tuple[int, int],
) -> DeployReal:
    """A fresh deployment accepting the real program; ``deploy_fresh``'s options apply."""
    direct, child = program_hashes

    async def deploy(**options: Any) -> Deployed:
        return await deploy_fresh(
            devnet,
            contract_artifacts,
            codecs,
            program_hash=direct,
            child_program_hash=child,
            **options,
        )

    return deploy


@pytest.fixture
async def deployed_with_integrity(deploy_real: DeployReal) -> Deployed:
    reason = classes_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return await deploy_real(fact_registry="integrity")
