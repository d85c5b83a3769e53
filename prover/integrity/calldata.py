"""Integrity's calldata for a parsed proof: the monolith and the split call sequence.

``StarkProofWithSerde`` is Cairo Serde of Integrity's ``*WithSerde`` structs, whose arrays
are flat felt arrays (length prefix = number of felts, e.g. FRI inner-layer configs are 3
felts each). Byte-for-byte what Integrity's own serializer emits.

The split flow's state structs (``FriVerificationStateConstant``/``Variable``,
``FriLayerWitness``) are plain Cairo Serde: spans are prefixed by their element count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starknet_py.hash.selector import get_selector_from_name

from prover import facts
from prover.integrity.errors import BadJobId, UnsupportedProof
from prover.integrity.field import PRIME, short_string
from prover.integrity.folding import FriStateConstant, FriStateVariable
from prover.integrity.model import (
    FriLayerWitness,
    PublicInput,
    StarkConfig,
    StarkProof,
    StarkUnsentCommitment,
    StarkWitness,
    TableCommitmentConfig,
    TableWitness,
)
from prover.integrity.replay import FriSchedule, commit, fri_schedule

VERIFY_FULL = "verify_proof_full_and_register_fact"
VERIFY_INITIAL = "verify_proof_initial"
VERIFY_STEP = "verify_proof_step"
VERIFY_FINAL = "verify_proof_final_and_register_fact"
MEMORY_VERIFICATIONS = ("strict",)  # what fact_of implements; the keeper proves Cairo 0
# An invoke transaction's calldata is the account's __execute__(Array<Call>) arguments:
# [n_calls, to, selector, len(calldata), *calldata] for one call.
ACCOUNT_CALL_OVERHEAD = 4


@dataclass(frozen=True)
class VerifierConfiguration:
    """Integrity's ``VerifierConfiguration``: four short strings naming the verifier."""

    layout: str
    hasher: str
    stone_version: str
    memory_verification: str

    def felts(self) -> tuple[int, int, int, int]:
        return (
            short_string(self.layout),
            short_string(self.hasher),
            short_string(self.stone_version),
            short_string(self.memory_verification),
        )

    def config_hash(self) -> int:
        """The key Integrity files verifications under (with fact and security bits)."""
        return facts.verifier_config_hash(
            self.layout, self.hasher, self.stone_version, self.memory_verification
        )


@dataclass(frozen=True)
class Call:
    """One FactRegistry call: the function and its whole calldata (felts)."""

    function: str
    calldata: tuple[int, ...]

    @property
    def selector(self) -> int:
        return int(get_selector_from_name(self.function))

    @property
    def transaction_felts(self) -> int:
        """Calldata felts of an invoke transaction carrying only this call."""
        return len(self.calldata) + ACCOUNT_CALL_OVERHEAD


def verifier_config(
    proof: StarkProof, memory_verification: str = "strict"
) -> VerifierConfiguration:
    """The configuration Integrity must be called with for this proof."""
    if memory_verification not in MEMORY_VERIFICATIONS:
        raise UnsupportedProof(
            f"memory verification {memory_verification!r} is not supported here (only "
            "'strict', the mode for Cairo 0 proof-mode programs)"
        )
    return VerifierConfiguration(
        layout=proof.layout.name,
        hasher=proof.hasher,
        stone_version=proof.stone_version,
        memory_verification=memory_verification,
    )


def monolith_calldata(proof: StarkProof) -> list[int]:
    """The proof as one ``StarkProofWithSerde`` (what Integrity's serializer prints)."""
    return _proof_felts(proof, proof.witness.fri_layers)


def full_verification_call(proof: StarkProof, config: VerifierConfiguration | None = None) -> Call:
    """``verify_proof_full_and_register_fact(config, proof)``: one transaction."""
    config = config or verifier_config(proof)
    return Call(VERIFY_FULL, (*config.felts(), *monolith_calldata(proof)))


def split_calldata(
    proof: StarkProof, job_id: int, config: VerifierConfiguration | None = None
) -> list[Call]:
    """The split verification, in call order: initial, one step per inner FRI layer, final.

    ``job_id`` keys the on-chain state of this verification; see ``prover.integrity.jobs``
    for how to choose it and how to resume (``jobs.split_plan`` adds the state hashes).
    """
    return split_calls_and_schedule(proof, job_id, config)[0]


def split_calls_and_schedule(
    proof: StarkProof, job_id: int, config: VerifierConfiguration | None = None
) -> tuple[list[Call], FriSchedule]:
    """The split calls and the replayed FRI schedule they were built from."""
    config = config or verifier_config(proof)
    schedule = fri_schedule(proof, commit(proof))
    job = _felt(job_id)
    constant = _state_constant(schedule.constant)
    calls = [Call(VERIFY_INITIAL, (job, *config.felts(), *_proof_felts(proof, ())))]
    for layer, variable in zip(proof.witness.fri_layers, schedule.variables, strict=False):
        calls.append(
            Call(VERIFY_STEP, (job, *constant, *_state_variable(variable), *_layer(layer)))
        )
    coefficients = proof.unsent_commitment.fri_last_layer_coefficients
    final = (job, *constant, *_state_variable(schedule.variables[-1]), *_span(coefficients))
    calls.append(Call(VERIFY_FINAL, final))
    return calls, schedule


def _proof_felts(proof: StarkProof, fri_layers: Sequence[FriLayerWitness]) -> list[int]:
    return [
        *_config(proof.config),
        *_public_input(proof.public_input),
        *_unsent_commitment(proof.unsent_commitment),
        *_witness(proof.witness, fri_layers),
    ]


def _table_config(table: TableCommitmentConfig) -> list[int]:
    vector = table.vector
    return [table.n_columns, vector.height, vector.n_verifier_friendly_commitment_layers]


def _config(config: StarkConfig) -> list[int]:
    fri = config.fri
    return [
        *_table_config(config.traces_original),
        *_table_config(config.traces_interaction),
        *_table_config(config.composition),
        fri.log_input_size,
        fri.n_layers,
        *_span([felt for layer in fri.inner_layers for felt in _table_config(layer)]),
        *_span(fri.fri_step_sizes),
        fri.log_last_layer_degree_bound,
        config.proof_of_work_bits,
        config.log_trace_domain_size,
        config.n_queries,
        config.log_n_cosets,
        config.n_verifier_friendly_commitment_layers,
    ]


def _public_input(public_input: PublicInput) -> list[int]:
    segments = [felt for s in public_input.segments for felt in (s.begin_addr, s.stop_ptr)]
    memory = [felt for cell in public_input.main_page for felt in (cell.address, cell.value)]
    return [
        public_input.log_n_steps,
        public_input.range_check_min,
        public_input.range_check_max,
        public_input.layout,
        *_span(public_input.dynamic_params),
        len(public_input.segments),
        *_span(segments),
        public_input.padding_addr,
        public_input.padding_value,
        len(public_input.main_page),
        *_span(memory),
        0,  # n_continuous_pages
        *_span(()),  # continuous_page_headers
    ]


def _unsent_commitment(sent: StarkUnsentCommitment) -> list[int]:
    return [
        sent.traces_original,
        sent.traces_interaction,
        sent.composition,
        *_span(sent.oods_values),
        *_span(sent.fri_inner_layers),
        *_span(sent.fri_last_layer_coefficients),
        sent.proof_of_work_nonce,
    ]


def _witness(witness: StarkWitness, fri_layers: Sequence[FriLayerWitness]) -> list[int]:
    def decommitment(table: TableWitness) -> list[int]:
        return [len(table.values), *_span(table.values)]

    def authentications(table: TableWitness) -> list[int]:
        return [len(table.authentications), *_span(table.authentications)]

    layers = [felt for layer in fri_layers for felt in _layer(layer)]
    return [
        *decommitment(witness.traces_original),
        *decommitment(witness.traces_interaction),
        *authentications(witness.traces_original),
        *authentications(witness.traces_interaction),
        *decommitment(witness.composition),
        *authentications(witness.composition),
        *_span(layers),
    ]


def _layer(layer: FriLayerWitness) -> list[int]:
    return [*_span(layer.leaves), *_span(layer.authentications)]


def _state_constant(constant: FriStateConstant) -> list[int]:
    commitments = []
    for config, commitment_hash in zip(
        constant.inner_layers, constant.commitment_hashes, strict=True
    ):
        vector = config.vector
        commitments += [*_table_config(config), vector.height]
        commitments += [vector.n_verifier_friendly_commitment_layers, commitment_hash]
    return [
        constant.n_layers,
        len(constant.inner_layers),
        *commitments,
        *_span(constant.eval_points),
        *_span(constant.step_sizes),
        constant.last_layer_coefficients_hash,
    ]


def _state_variable(variable: FriStateVariable) -> list[int]:
    queries = [felt for q in variable.queries for felt in (q.index, q.y_value, q.x_inv_value)]
    return [variable.iteration, len(variable.queries), *queries]


def _span(values: Sequence[int]) -> list[int]:
    return [len(values), *values]


def _felt(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < PRIME:
        raise BadJobId(f"job id {value!r} is not a field element: use an int in 0..P-1")
    return value


def calldata_parts(proof: StarkProof) -> dict[str, int]:
    """Felts of the monolith calldata per part of the proof (they sum to its length).

    What each part of a verification pays for in calldata, to find where the gas goes:
    the public memory (the program's bytecode among it) is paid by every verification
    whatever the trace; decommitments and FRI layers grow with the number of queries.
    """
    public_input = proof.public_input
    # Integrity's strict mode: the program is memory [initial_pc = 1, initial_fp - 2), and
    # initial_fp is where the execution segment begins.
    initial_fp = public_input.segments[1].begin_addr
    program_cells = sum(1 for cell in public_input.main_page if 1 <= cell.address < initial_fp - 2)
    memory_felts = 2 * len(public_input.main_page)
    witness = proof.witness
    sent = proof.unsent_commitment

    def table(part: TableWitness) -> tuple[int, int]:
        # Serde of a *WithSerde table: its length, then the span (length again + felts).
        return 2 + len(part.values), 2 + len(part.authentications)

    trace_values = table(witness.traces_original)[0] + table(witness.traces_interaction)[0]
    trace_auth = table(witness.traces_original)[1] + table(witness.traces_interaction)[1]
    composition_values, composition_auth = table(witness.composition)
    fri_leaves = sum(1 + len(layer.leaves) for layer in witness.fri_layers)
    fri_auth = sum(1 + len(layer.authentications) for layer in witness.fri_layers)
    parts = {
        "config": len(_config(proof.config)),
        "public_memory_program": 2 * program_cells,
        "public_memory_other": memory_felts - 2 * program_cells,
        "public_input_other": len(_public_input(public_input)) - memory_felts,
        "oods_values": 1 + len(sent.oods_values),
        "fri_last_layer": 1 + len(sent.fri_last_layer_coefficients),
        "commitments": len(_unsent_commitment(sent))
        - (1 + len(sent.oods_values))
        - (1 + len(sent.fri_last_layer_coefficients)),
        "trace_values": trace_values,
        "trace_authentications": trace_auth,
        "composition_values": composition_values,
        "composition_authentications": composition_auth,
        "fri_layer_leaves": fri_leaves,
        "fri_layer_authentications": fri_auth,
        "fri_span_header": 1,
    }
    return parts
