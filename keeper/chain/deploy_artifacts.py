"""The compiled contracts (contracts/target) and the few chain reads and calls a deploy makes
(class hashes, views, one invoke)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.core.errors import ChainError, UsageError

PACKAGE = "obsqra"
POLL_S = 0.1

# ---------------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class ContractArtifact:
    name: str
    sierra: str
    casm: str
    abi: list[Any]


def load_artifacts(target_dir: Path, names: Sequence[str]) -> dict[str, ContractArtifact]:
    """Read the Sierra/CASM pairs that scripts/build_contracts.sh (or scarb) wrote."""
    artifacts: dict[str, ContractArtifact] = {}
    for name in names:
        sierra_path = target_dir / f"{PACKAGE}_{name}.contract_class.json"
        casm_path = target_dir / f"{PACKAGE}_{name}.compiled_contract_class.json"
        for path in (sierra_path, casm_path):
            if not path.is_file():
                raise UsageError(
                    f"{path} is missing: build the contracts first (make contracts, "
                    "or scripts/build_contracts.sh)"
                )
        sierra = sierra_path.read_text()
        try:
            abi = json.loads(sierra)["abi"]
            if isinstance(abi, str):
                abi = json.loads(abi)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{sierra_path} is not a Sierra contract class ({exc})") from exc
        artifacts[name] = ContractArtifact(name, sierra, casm_path.read_text(), abi)
    return artifacts


def sierra_class_hash(artifact: ContractArtifact) -> int:
    from starknet_py.common import create_sierra_compiled_contract
    from starknet_py.hash.sierra_class_hash import compute_sierra_class_hash

    return int(compute_sierra_class_hash(create_sierra_compiled_contract(artifact.sierra)))


def compiled_class_hash(artifact: ContractArtifact, starknet_version: str) -> int:
    """The CASM hash with the hash function the node's Starknet version uses."""
    from semver import Version
    from starknet_py.common import create_casm_class
    from starknet_py.hash.casm_class_hash import (
        compute_casm_class_hash,
        get_casm_hash_method_for_starknet_version,
    )

    method = get_casm_hash_method_for_starknet_version(_parse_version(Version, starknet_version))
    return int(compute_casm_class_hash(create_casm_class(artifact.casm), hash_method=method))


def _parse_version(version_cls: Any, text: str) -> Any:
    parts = [*text.split("."), "0", "0"][:3]  # Starknet versions may have 4 parts
    return version_cls.parse(".".join(parts))


# ---------------------------------------------------------------------------- chain reads


def selector(name: str) -> int:
    from starknet_py.hash.selector import get_selector_from_name

    return int(get_selector_from_name(name))


def make_call(to: int, function: str, calldata: Sequence[int] = ()) -> Any:
    from starknet_py.net.client_models import Call

    return Call(to_addr=to, selector=selector(function), calldata=list(calldata))


async def call_view(client: Any, to: int, function: str, calldata: Sequence[int] = ()) -> list[int]:
    return [int(x) for x in await client.call_contract(make_call(to, function, calldata))]


async def invoke(account: Any, calls: list[Any]) -> int:
    """Send one multicall (v3, resource bounds from estimate) and wait for acceptance
    (tests and the demo's drivers; deployments go through ``Sender``)."""
    from starknet_py.net.client_errors import ClientError

    try:
        sent = await account.execute_v3(calls=calls, auto_estimate=True)
        receipt = await account.client.wait_for_tx(sent.transaction_hash, check_interval=POLL_S)
    except ClientError as exc:
        raise ChainError(f"transaction failed: {exc.message}") from exc
    if getattr(receipt, "revert_reason", None):
        raise ChainError(f"transaction reverted: {receipt.revert_reason}")
    return int(sent.transaction_hash)


async def class_declared(client: Any, class_hash: int) -> bool:
    from starknet_py.net.client_errors import ClientError

    try:
        await client.get_class_by_hash(class_hash)
    except ClientError:
        return False
    return True


async def class_hash_at(client: Any, address: int) -> int | None:
    from starknet_py.net.client_errors import ClientError

    try:
        return int(await client.get_class_hash_at(address))
    except ClientError:
        return None
