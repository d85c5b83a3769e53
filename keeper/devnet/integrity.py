"""Herodotus' Integrity (the Stone verifier on Starknet) on a local starknet-devnet.

Real networks have Integrity deployed (its FactRegistry addresses are in
``keeper.chain.integrity``). A devnet gets it from the compiled classes in the
project's shared folder (``../shared/integrity/classes`` beside the repository, or
``$INTEGRITY_CLASSES_DIR``): FactRegistry, CairoVerifier and LayoutOodsContract, built
from Integrity's public source with the features small + keccak + split (see that
folder's README). Deployed as Integrity's own scripts do:

    LayoutOodsContract()  →  CairoVerifier(0, oods)  →  FactRegistry(owner)
    FactRegistry.register_verifier(('small', 'keccak'), verifier)

The verifier's Sierra program (96,052 felts) exceeds devnet's default
``--maximum-sierra-length`` (81,920): start the devnet with ``DEVNET_ARGS``.
Deterministic salts make a re-run find what is there instead of deploying again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.chain.codec import encode_short_string
from keeper.core.errors import UsageError
from keeper.devnet.deploy import (
    ContractArtifact,
    class_declared,
    class_hash_at,
    compiled_class_hash,
    invoke,
    make_call,
    sierra_class_hash,
)

CLASSES_ENV = "INTEGRITY_CLASSES_DIR"
# Where the project keeps Integrity's compiled classes, next to the repository.
DEFAULT_CLASSES_DIR = Path(__file__).resolve().parents[3] / "shared" / "integrity" / "classes"
DEVNET_ARGS = ("--maximum-sierra-length", "200000")
CLASS_FILES = {
    "FactRegistry": "integrity_FactRegistry",
    "CairoVerifier": "integrity_CairoVerifier",
    "LayoutOodsContract": "integrity_LayoutOodsContract",
}
# The one verifier these classes contain (features small + keccak): Integrity's preset
# key is (layout, hasher family).
PRESET = ("small", "keccak")
_SALT_BASE = encode_short_string("obsqra-integrity")


@dataclass(frozen=True)
class IntegrityDeployment:
    fact_registry: int
    verifier: int
    oods: int


def classes_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder with Integrity's compiled classes, or None when it is not there."""
    environ = os.environ if environ is None else environ
    named = environ.get(CLASSES_ENV)
    path = Path(named) if named else DEFAULT_CLASSES_DIR
    if named and not path.is_dir():
        raise UsageError(f"{CLASSES_ENV}={named} is not a directory")
    if not all((path / f"{stem}.contract_class.json").is_file() for stem in CLASS_FILES.values()):
        if named:
            raise UsageError(
                f"{CLASSES_ENV}={named} does not hold Integrity's classes "
                f"({', '.join(f'{s}.contract_class.json' for s in CLASS_FILES.values())})"
            )
        return None
    return path


def load_classes(directory: Path) -> dict[str, ContractArtifact]:
    artifacts = {}
    for name, stem in CLASS_FILES.items():
        sierra = (directory / f"{stem}.contract_class.json").read_text()
        casm = (directory / f"{stem}.compiled_contract_class.json").read_text()
        artifacts[name] = ContractArtifact(name, sierra, casm, [])
    return artifacts


async def deploy_integrity(
    account: Any, directory: Path, *, starknet_version: str, owner: int
) -> IntegrityDeployment:
    """Declare what is missing, deploy what is not at its address, register the verifier."""
    from starknet_py.net.udc_deployer.deployer import Deployer

    artifacts = load_classes(directory)
    hashes = {}
    for name, artifact in artifacts.items():
        class_hash = sierra_class_hash(artifact)
        if not await class_declared(account.client, class_hash):
            await _declare(account, artifact, compiled_class_hash(artifact, starknet_version))
        hashes[name] = class_hash

    deployer = Deployer()  # UDC, not unique: the address depends on salt, class, calldata

    async def deploy(name: str, calldata: list[int], salt: int) -> int:
        call, address = deployer.create_contract_deployment_raw(
            hashes[name], salt=_SALT_BASE + salt, raw_calldata=calldata
        )
        if await class_hash_at(account.client, int(address)) != hashes[name]:
            await invoke(account, [call])
        return int(address)

    oods = await deploy("LayoutOodsContract", [], 1)
    verifier = await deploy("CairoVerifier", [0, oods], 2)
    registry = await deploy("FactRegistry", [owner], 3)
    preset = [encode_short_string(PRESET[0]), encode_short_string(PRESET[1])]
    if await _registered_verifier(account.client, registry, preset) != verifier:
        await invoke(account, [make_call(registry, "register_verifier", [*preset, verifier])])
    return IntegrityDeployment(fact_registry=registry, verifier=verifier, oods=oods)


async def _registered_verifier(client: Any, registry: int, preset: list[int]) -> int | None:
    from starknet_py.net.client_errors import ClientError

    try:
        answer = await client.call_contract(make_call(registry, "get_verifier_address", preset))
    except ClientError:
        return None  # Integrity panics with VERIFIER_NOT_FOUND for an unknown preset
    return int(answer[0])


async def _declare(account: Any, artifact: ContractArtifact, casm_hash: int) -> None:
    declare_tx = await account.sign_declare_v3(
        compiled_contract=artifact.sierra, compiled_class_hash=casm_hash, auto_estimate=True
    )
    sent = await account.client.declare(transaction=declare_tx)
    await account.client.wait_for_tx(sent.transaction_hash, check_interval=0.1)
