"""The STARK proof as Integrity's Cairo verifier reads it (``StarkProofWithSerde``).

Field names follow Integrity's structs so that the serializer (``calldata.py``) reads like
the Cairo definitions: config, public input, unsent commitment (what the prover sends
before the queries) and witness (the decommitments). All values are field elements
(Python ints in [0, P)).
"""

from __future__ import annotations

from dataclasses import dataclass

from prover.integrity.layouts import Layout


@dataclass(frozen=True)
class VectorCommitmentConfig:
    height: int
    n_verifier_friendly_commitment_layers: int


@dataclass(frozen=True)
class TableCommitmentConfig:
    n_columns: int
    vector: VectorCommitmentConfig


@dataclass(frozen=True)
class FriConfig:
    log_input_size: int
    n_layers: int  # inner layers + the last layer = len(fri_step_sizes)
    inner_layers: tuple[TableCommitmentConfig, ...]  # n_layers - 1
    fri_step_sizes: tuple[int, ...]  # first is 0
    log_last_layer_degree_bound: int


@dataclass(frozen=True)
class StarkConfig:
    traces_original: TableCommitmentConfig
    traces_interaction: TableCommitmentConfig
    composition: TableCommitmentConfig
    fri: FriConfig
    proof_of_work_bits: int
    log_trace_domain_size: int
    n_queries: int
    log_n_cosets: int
    n_verifier_friendly_commitment_layers: int

    @property
    def log_eval_domain_size(self) -> int:
        return self.log_trace_domain_size + self.log_n_cosets

    @property
    def security_bits(self) -> int:
        """What Integrity registers: n_queries * log_n_cosets + proof-of-work bits."""
        return self.n_queries * self.log_n_cosets + self.proof_of_work_bits


@dataclass(frozen=True)
class SegmentInfo:
    begin_addr: int
    stop_ptr: int


@dataclass(frozen=True)
class MemoryCell:
    address: int
    value: int


@dataclass(frozen=True)
class PublicInput:
    log_n_steps: int
    range_check_min: int
    range_check_max: int
    layout: int  # the layout name as a short string
    dynamic_params: tuple[int, ...]  # empty for every supported layout
    segments: tuple[SegmentInfo, ...]  # program, execution, then the layout's builtins
    padding_addr: int
    padding_value: int
    main_page: tuple[MemoryCell, ...]
    # Continuous pages (bootloaded proofs) are refused: every Integrity memory
    # verification mode asserts there are none, so the header list is always empty.


@dataclass(frozen=True)
class StarkUnsentCommitment:
    traces_original: int
    traces_interaction: int
    composition: int
    oods_values: tuple[int, ...]
    fri_inner_layers: tuple[int, ...]
    fri_last_layer_coefficients: tuple[int, ...]
    proof_of_work_nonce: int


@dataclass(frozen=True)
class TableWitness:
    """Decommitted values of a table (row-major: query by query) and its Merkle witness."""

    values: tuple[int, ...]
    authentications: tuple[int, ...]


@dataclass(frozen=True)
class FriLayerWitness:
    leaves: tuple[int, ...]  # the coset siblings of the queries, in coset order
    authentications: tuple[int, ...]


@dataclass(frozen=True)
class StarkWitness:
    traces_original: TableWitness
    traces_interaction: TableWitness
    composition: TableWitness
    fri_layers: tuple[FriLayerWitness, ...]  # one per inner FRI layer


@dataclass(frozen=True)
class StarkProof:
    """A parsed, checked Stone proof plus what Integrity's configuration needs to name it."""

    config: StarkConfig
    public_input: PublicInput
    unsent_commitment: StarkUnsentCommitment
    witness: StarkWitness
    layout: Layout
    hasher: str  # Integrity's name, e.g. "keccak_160_lsb"
    stone_version: str  # "stone5" | "stone6", detected from the transcript
