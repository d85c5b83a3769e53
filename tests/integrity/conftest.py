"""Integrity's real contracts on a devnet of their own, deployed once per session, and our
IntegrityGuard over their verifier (a fresh one per test: ``fresh_guard``).

Needs the compiled classes of ../shared/integrity (or $INTEGRITY_CLASSES_DIR) and its
real Stone proofs; without them every test here skips and says why.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starknet_py.net.full_node_client import FullNodeClient

from keeper.chain import ChainClient, VerifierConfig
from keeper.core.config import ChainConfig, Secrets
from keeper.devnet import deploy as devnet_deploy
from keeper.devnet.integrity import DEVNET_ARGS, IntegrityDeployment, classes_dir, deploy_integrity
from keeper.store.db import open_store
from keeper.store.jobs import Job, JobState, JobStore
from tests.support.devnet import Devnet, start_devnet
from tests.support.integrity import classes_skip_reason

ROOT = Path(__file__).resolve().parents[2]
_DEFAULT_SHARED = Path(__file__).resolve().parents[3] / "shared" / "integrity"
SHARED = Path(os.environ.get("INTEGRITY_DIR", _DEFAULT_SHARED))
PROOFS = SHARED / "proofs"
FIBONACCI = PROOFS / "small_stone6_keccak_fibonacci.proof.json"
ALLOCATION = PROOFS / "allocation_small_stone6_keccak_96bits.proof.json"
PIN = VerifierConfig("small", "keccak_160_lsb", "stone6", "strict")
OWNER, KEEPER = 0, 1


def _skip_reason() -> str | None:
    reason = classes_skip_reason()
    if reason is None and (not FIBONACCI.is_file() or not ALLOCATION.is_file()):
        return f"Integrity's reference proofs are absent from {PROOFS}"
    return reason


SKIP = _skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


@dataclass
class IntegrityChain:
    devnet: Devnet
    chain_id: int
    starknet_version: str
    deployment: IntegrityDeployment

    def account(self, index: int) -> Any:
        return devnet_deploy.make_account(
            self.devnet.url, self.devnet.accounts[index], self.chain_id
        )

    def client(self, index: int = KEEPER, **overrides: Any) -> ChainClient:
        account = self.devnet.accounts[index]
        cfg = ChainConfig(
            rpc_url=self.devnet.url,
            chain_id=hex(self.chain_id),
            router_address="0x1",  # the registrar reads no router
            risk_engine_address="0x2",
            account_address=hex(account.address),
            **overrides,
        )
        from starknet_py.net.signer.key_pair import KeyPair

        return ChainClient(cfg, Secrets(), key_pair=KeyPair.from_private_key(account.private_key))

    async def fresh_registry(self, salt: int) -> int:
        """A FactRegistry of its own (same verifier): a registration starts from nothing."""
        from starknet_py.net.udc_deployer.deployer import Deployer

        owner = self.account(OWNER)
        class_hash = await owner.client.get_class_hash_at(self.deployment.fact_registry)
        call, address = Deployer().create_contract_deployment_raw(
            class_hash, salt=salt, raw_calldata=[self.devnet.accounts[OWNER].address]
        )
        preset = [int.from_bytes(b"small", "big"), int.from_bytes(b"keccak", "big")]
        register = devnet_deploy.make_call(
            int(address), "register_verifier", [*preset, self.deployment.verifier]
        )
        await devnet_deploy.invoke(owner, [call, register])
        return int(address)

    async def fresh_guard(self, salt: int, pin: VerifierConfig = PIN, delay_s: int = 0) -> int:
        """An IntegrityGuard of its own over the session's CairoVerifier, pinned to ``pin``
        (owner: account 0): a registration through it starts from nothing."""
        from starknet_py.net.udc_deployer.deployer import Deployer

        from keeper.chain.deploy import GuardPin, guard_constructor_calldata

        owner = self.account(OWNER)
        artifact = guard_artifact()
        class_hash = devnet_deploy.sierra_class_hash(artifact)
        if not await devnet_deploy.class_declared(owner.client, class_hash):
            declare = await owner.sign_declare_v3(
                compiled_contract=artifact.sierra,
                compiled_class_hash=devnet_deploy.compiled_class_hash(
                    artifact, self.starknet_version
                ),
                auto_estimate=True,
            )
            sent = await owner.client.declare(declare)
            await owner.client.wait_for_tx(sent.transaction_hash, check_interval=0.05)
        config = (pin.layout, pin.hasher, pin.stone_version, pin.memory_verification)
        calldata = guard_constructor_calldata(
            self.devnet.accounts[OWNER].address,
            GuardPin(self.deployment.verifier, config),
            delay_s,
        )
        call, address = Deployer().create_contract_deployment_raw(
            class_hash, salt=salt, raw_calldata=calldata
        )
        await devnet_deploy.invoke(owner, [call])
        return int(address)

    async def verifications(self, registry: int, fact: int) -> list[list[int]]:
        client = FullNodeClient(node_url=self.devnet.url)
        raw = await devnet_deploy.call_view(
            client, registry, "get_all_verifications_for_fact_hash", [fact]
        )
        n = raw[0]
        return [raw[1 + 6 * i : 7 + 6 * i] for i in range(n)]


@functools.cache
def guard_artifact() -> devnet_deploy.ContractArtifact:
    """Our IntegrityGuard, built with the pinned compilers (a no-op when up to date)."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_contracts.sh")],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/build_contracts.sh failed:\n{result.stderr[-3000:]}", pytrace=False)
    return devnet_deploy.load_artifacts(ROOT / "contracts" / "target", ["IntegrityGuard"])[
        "IntegrityGuard"
    ]


@pytest.fixture(scope="session")
def integrity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntegrityChain]:
    if SKIP is not None:
        pytest.skip(SKIP)
    directory = classes_dir()
    assert directory is not None
    with start_devnet(tmp_path_factory.mktemp("integrity"), extra_args=DEVNET_ARGS) as devnet:

        async def deploy() -> IntegrityChain:
            client = FullNodeClient(node_url=devnet.url)
            chain_id = int(await client.get_chain_id(), 16)
            block = await client.get_block(block_number="latest")
            version = str(block.starknet_version)
            owner = devnet_deploy.make_account(devnet.url, devnet.accounts[OWNER], chain_id)
            deployment = await deploy_integrity(
                owner, directory, starknet_version=version, owner=devnet.accounts[OWNER].address
            )
            return IntegrityChain(devnet, chain_id, version, deployment)

        yield asyncio.run(deploy())


def proved_job(jobs: JobStore, proof_path: Path, epoch: int = 1) -> Job:
    """A job in state ``proved`` whose proof is a reference Stone proof."""
    fact = int((proof_path.with_suffix("").with_suffix(".fact")).read_text().strip(), 16)
    job = jobs.create(0xABC, epoch, "request")
    assert job is not None
    job = jobs.advance(job, JobState.TRACED, output_json="[]")
    job = jobs.advance(job, JobState.PROVING)
    return jobs.advance(
        job, JobState.PROVED, prover="stone", proof_path=str(proof_path), fact_hash=hex(fact)
    )


def open_jobs(path: Path) -> JobStore:
    return JobStore(open_store(path))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
