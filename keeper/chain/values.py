"""What the chain client returns: typed, immutable results of reads and transactions.

``VerifierConfig`` lives with the router's governance (its pins are ones) and is
re-exported here with the other values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starknet_py.net.client_models import ResourceBoundsMapping

from keeper.chain.governance import GovernanceParams, VerifierConfig
from prover.model import ModelParams, ProtocolInputs


@dataclass(frozen=True)
class ChainInfo:
    chain_id: int
    chain_name: str  # the short string when the id is one, else hex
    spec_version: str
    block_number: int


@dataclass(frozen=True)
class Verification:
    """One verification in a FactRegistry: ``get_verification(verification_hash)``."""

    fact_hash: int
    security_bits: int
    verifier_config: VerifierConfig


@dataclass(frozen=True)
class VerificationListElement:
    """One entry of a FactRegistry's ``get_all_verifications_for_fact_hash``."""

    verification_hash: int
    security_bits: int
    verifier_config: VerifierConfig


@dataclass(frozen=True)
class RouterState:
    epoch: int
    allocation: tuple[int, ...]
    governance: GovernanceParams
    last_execution_timestamp: int
    block_number: int
    # The owner's request_rebalance for this epoch (lifts the schedule on-chain).
    rebalance_requested: bool = False


@dataclass(frozen=True)
class RiskInputs:
    protocols: tuple[ProtocolInputs, ...]
    params: ModelParams
    block_number: int


@dataclass(frozen=True)
class TxOutcome:
    """A transaction's final (ACCEPTED_ON_L2 or L1) receipt."""

    tx_hash: int
    status: Literal["succeeded", "reverted"]
    revert_reason: str | None  # decoded (decode_revert_reason); None when succeeded
    actual_fee_amount: int
    actual_fee_unit: str  # "FRI" or "WEI"
    block_number: int | None
    revert_detail: str | None = None  # the node's raw text, for the log

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class FeeQuote:
    estimated_fee: int
    max_fee: int
    unit: str
    resource_bounds: ResourceBoundsMapping


__all__ = [
    "ChainInfo",
    "FeeQuote",
    "RiskInputs",
    "RouterState",
    "TxOutcome",
    "Verification",
    "VerificationListElement",
    "VerifierConfig",
]
