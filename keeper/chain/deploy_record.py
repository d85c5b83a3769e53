"""The deployment record (``--out``, JSON): what was deployed where, and the transaction in
flight, rewritten atomically after every step."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeper.chain.codec import chain_name
from keeper.core.errors import UsageError

Report = list[tuple[str, str]]
Step = Callable[[str, str], None]


# ---------------------------------------------------------------------------- the record


@dataclass
class Deployment:
    """What the deployment record (``--out``, e.g. deployments/sepolia.json) holds."""

    chain_id: int
    rpc_url: str  # scheme://host[:port] only: an RPC URL's path or query may hold a key
    deployer: int
    network: str = "devnet"
    block_number: int = 0
    contracts: dict[str, dict[str, int]] = field(default_factory=dict)
    program_hash: int = 0
    child_program_hash: int = 0
    roles: dict[str, Any] = field(default_factory=dict)
    fact_registry: int = 0
    salt: int | None = None
    # The transaction in flight: written before it is broadcast, cleared once it is final.
    pending_tx: dict[str, Any] | None = None

    def address(self, name: str) -> int:
        return self.contracts[name]["address"]

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "chain_id": hex(self.chain_id),
            "chain": chain_name(self.chain_id),
            "rpc_url": self.rpc_url,
            "deployer": hex(self.deployer),
            "block_number": self.block_number,
            "contracts": {
                name: {key: hex(value) for key, value in entry.items()}
                for name, entry in self.contracts.items()
            },
            "fact_registry": hex(self.fact_registry),
            "program_hash": hex(self.program_hash),
            "child_program_hash": hex(self.child_program_hash),
            "roles": self.roles,
            "salt": None if self.salt is None else hex(self.salt),
            "pending_tx": self.pending_tx,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deployment:
        salt = data.get("salt")
        pending = data.get("pending_tx")
        return cls(
            chain_id=int(data["chain_id"], 16),
            rpc_url=str(data.get("rpc_url", "")),
            deployer=int(data["deployer"], 16),
            network=str(data.get("network", "devnet")),
            block_number=int(data.get("block_number", 0)),
            contracts={
                name: {key: int(value, 16) for key, value in entry.items()}
                for name, entry in data.get("contracts", {}).items()
            },
            fact_registry=int(data.get("fact_registry", "0x0"), 16),
            program_hash=int(data.get("program_hash", "0x0"), 16),
            child_program_hash=int(data.get("child_program_hash", "0x0"), 16),
            roles=dict(data.get("roles", {})),
            salt=None if salt is None else int(salt, 16),
            pending_tx=dict(pending) if pending else None,
        )


def read_deployment(path: Path) -> Deployment | None:
    if not path.exists():
        return None
    if path.is_dir():
        raise UsageError(f"--out {path} is a directory; give a file path")
    try:
        return Deployment.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(
            f"{path} is not a deployment record ({exc}); move it away to deploy afresh"
        ) from exc


def write_deployment(path: Path, deployment: Deployment) -> None:
    """Atomic write: an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as out:
        out.write(json.dumps(deployment.to_json(), indent=2) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
