"""Fixtures every devnet suite shares: one starknet-devnet for the whole session and the
contracts built once. Each test that needs clean state deploys fresh contracts on it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper.devnet import deploy as devnet_deploy
from tests.support.devnet import Devnet, start_devnet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def contract_artifacts() -> dict[str, devnet_deploy.ContractArtifact]:
    """Build with the pinned compilers (a no-op when up to date), then load."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_contracts.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/build_contracts.sh failed:\n{result.stderr[-3000:]}", pytrace=False)
    return devnet_deploy.load_artifacts(ROOT / "contracts" / "target")


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with start_devnet(tmp_path_factory.mktemp("devnet")) as node:
        yield node
