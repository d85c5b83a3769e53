"""What the chain client returns: typed, immutable results of reads and transactions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starknet_py.net.client_models import ResourceBoundsMapping

from keeper.chain.codec import encode_short_string
from keeper.chain.governance import GovernanceParams
from prover.model import ModelParams, ProtocolInputs


@dataclass(frozen=True)
class ChainInfo:
    chain_id: int
    chain_name: str  # the short string when the id is one, else hex
    spec_version: str
    block_number: int


@dataclass(frozen=True)
class VerifierConfig:
    """Integrity's VerifierConfiguration: four short strings."""

    layout: str
    hasher: str
    stone_version: str
    memory_verification: str

    def felts(self) -> list[int]:
        return [
            encode_short_string(self.layout),
            encode_short_string(self.hasher),
            encode_short_string(self.stone_version),
            encode_short_string(self.memory_verification),
        ]


@dataclass(frozen=True)
class Verification:
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
