"""Fixtures of the deploy tests.

``fresh_chain``: a starknet-devnet of its own (nothing declared yet, as on a network the
contracts never reached), on a chain of its own name (``FRESH_CHAIN_ID``: neither
SN_SEPOLIA nor SN_MAIN, so no known Integrity address applies and ``--network
sepolia|mainnet`` must refuse it), where Integrity's real FactRegistry stands in for Sepolia's,
with a verifier registered for the (small, keccak) preset the direct pin needs. The
verifier entry names a plain account: these tests deploy, they verify no proof (the
full Integrity deployment is exercised by ``devnet deploy --fact-registry integrity``
and tests/integrity). Needs Integrity's compiled classes; skipped with the reason
otherwise.

``Signer``: the deployer's key in an encrypted keystore made here (eth_keyfile, as
starkli writes), its password in a credential file named by
KEEPER_KEYSTORE_PASSWORD_FILE, exactly as an operator provides them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_keyfile.keyfile import create_keyfile_json
from starknet_py.net.full_node_client import FullNodeClient

from keeper.chain.codec import encode_short_string
from keeper.chain.deploy import ContractArtifact, class_hash_at, compiled_class_hash
from keeper.devnet import deploy as devnet_deploy
from keeper.devnet.integrity import classes_dir, load_classes
from tests.support.devnet import Devnet, DevnetAccount, start_devnet
from tests.support.integrity import classes_skip_reason

PASSWORD = "correct horse battery staple"
DEPLOYER, KEEPER, OTHER = 0, 1, 2
FRESH_CHAIN_ID = "SN_OBSQRA_TEST"


INTEGRITY_SKIP = classes_skip_reason()
needs_integrity = pytest.mark.skipif(INTEGRITY_SKIP is not None, reason=INTEGRITY_SKIP or "")


@dataclass(frozen=True)
class Signer:
    account: DevnetAccount
    keystore: Path
    password_file: Path


def make_signer(directory: Path, account: DevnetAccount, password: str = PASSWORD) -> Signer:
    directory.mkdir(parents=True, exist_ok=True)
    keyfile = create_keyfile_json(
        account.private_key.to_bytes(32, "big"), password, kdf="scrypt", iterations=2**10
    )
    keystore = directory / "keystore.json"
    keystore.write_text(json.dumps(keyfile))
    password_file = directory / "keystore_password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return Signer(account, keystore, password_file)


@dataclass(frozen=True)
class FreshChain:
    devnet: Devnet
    registry: int  # Integrity's FactRegistry, (small, keccak) registered
    signer: Signer  # devnet account 0

    def account(self, index: int) -> DevnetAccount:
        return self.devnet.accounts[index]


async def deploy_fact_registry(devnet: Devnet, registry_class: ContractArtifact) -> int:
    from starknet_py.common import create_sierra_compiled_contract
    from starknet_py.hash.sierra_class_hash import compute_sierra_class_hash
    from starknet_py.net.udc_deployer.deployer import Deployer

    client = FullNodeClient(node_url=devnet.url)
    chain_id = int(await client.get_chain_id(), 16)
    version = str((await client.get_block(block_number="latest")).starknet_version)
    owner = devnet.accounts[OTHER]
    account = devnet_deploy.make_account(devnet.url, owner, chain_id)
    declare = await account.sign_declare_v3(
        compiled_contract=registry_class.sierra,
        compiled_class_hash=compiled_class_hash(registry_class, version),
        auto_estimate=True,
    )
    sent = await client.declare(declare)
    await client.wait_for_tx(sent.transaction_hash, check_interval=0.05)
    class_hash = compute_sierra_class_hash(create_sierra_compiled_contract(registry_class.sierra))
    call, address = Deployer().create_contract_deployment_raw(
        class_hash, salt=1, raw_calldata=[owner.address]
    )
    preset = [encode_short_string("small"), encode_short_string("keccak")]
    register = devnet_deploy.make_call(
        int(address), "register_verifier", [*preset, devnet.accounts[OTHER].address]
    )
    await devnet_deploy.invoke(account, [call, register])
    assert await class_hash_at(client, int(address)) == class_hash
    return int(address)


@pytest.fixture
def fresh_chain(tmp_path: Path) -> Iterator[FreshChain]:
    if INTEGRITY_SKIP is not None:
        pytest.skip(INTEGRITY_SKIP)
    directory = classes_dir()
    assert directory is not None
    registry_class = load_classes(directory)["FactRegistry"]
    work_dir = tmp_path / "devnet"
    work_dir.mkdir()
    with start_devnet(work_dir, extra_args=("--chain-id", FRESH_CHAIN_ID)) as devnet:
        registry = asyncio.run(deploy_fact_registry(devnet, registry_class))
        yield FreshChain(devnet, registry, make_signer(tmp_path / "signer", devnet.accounts[0]))
