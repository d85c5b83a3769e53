"""End-to-end fixtures: the session devnet, contracts and ABI codecs of the contract
tests, and deployments that accept the real compiled allocation program (so the keeper's
proofs pass the router's gate): ``deployed`` trusts the DevFactRegistry (the dev prover),
``deployed_with_integrity`` Integrity's real FactRegistry and verifier (Stone proofs;
skipped with the reason when Integrity's compiled classes are absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.devnet import deploy as devnet_deploy
from keeper.devnet.integrity import classes_dir
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


def _integrity_skip_reason() -> str | None:
    try:
        found = classes_dir()
    except Exception as exc:  # a broken folder: say what is wrong with it
        return f"Integrity's compiled classes are unusable: {exc}"
    if found is None:
        return (
            "Integrity's compiled classes are absent (../shared/integrity/classes or "
            "INTEGRITY_CLASSES_DIR): no real verifier to register Stone facts"
        )
    return None


@pytest.fixture
async def deployed_with_integrity(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
    program_hashes: tuple[int, int],
) -> Deployed:
    reason = _integrity_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    direct, child = program_hashes
    return await deploy_fresh(
        devnet,
        contract_artifacts,
        codecs,
        program_hash=direct,
        child_program_hash=child,
        fact_registry="integrity",
    )
