"""Replays Integrity's verifier on a parsed proof, up to what the split calldata needs.

The split flow sends, between transactions, the FRI state that ``verify_proof_initial``
computed on-chain (queries with their folded values). To produce those calls offline we
run the same steps: Fiat-Shamir channel from the public-input hash, commitment phase,
proof-of-work check, query sampling, the DEEP (OODS boundary) evaluation at the queries,
then each FRI folding and the last-layer check.

Not replayed: the composition-polynomial check at the OODS point (``verify_oods``, the
layout's full constraint system) and the Merkle authentication paths. Both only accept or
reject; neither feeds the calldata. The FRI last-layer check here catches any error in the
replayed values (a wrong mask, transcript or witness value makes it fail).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from Crypto.Hash import keccak
from starknet_py.hash.utils import pedersen_hash

from prover.integrity.channel import Channel
from prover.integrity.errors import InconsistentProof, InvalidProof
from prover.integrity.field import (
    FIELD_GENERATOR,
    PRIME,
    bit_reverse,
    inverse,
    poseidon_many,
    root_of_unity,
)
from prover.integrity.folding import (
    FoldedLayer,
    FriLayerQuery,
    FriStateConstant,
    FriStateVariable,
    check_last_layer,
    fold_layer,
)
from prover.integrity.layouts import CONSTRAINT_DEGREE
from prover.integrity.model import MemoryCell, PublicInput, StarkProof

STONE5 = "stone5"
STONE6 = "stone6"
_POW_MAGIC = 0x0123456789ABCDED


@dataclass(frozen=True)
class Commitment:
    """The verifier's random values of the commitment phase."""

    interaction_elements: tuple[int, ...]
    composition_alpha: int
    oods_point: int
    oods_alpha: int
    fri_eval_points: tuple[int, ...]
    query_samples: tuple[int, ...]  # as drawn, before sorting and deduplication

    @property
    def queries(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.query_samples)))


@dataclass(frozen=True)
class FriSchedule:
    """Everything the split calls carry besides the proof itself."""

    queries: tuple[int, ...]
    constant: FriStateConstant
    variables: tuple[FriStateVariable, ...]  # [k] = input of step k; [-1] = input of final
    sibling_positions: tuple[tuple[tuple[int, int], ...], ...]  # per inner layer


def public_input_hash(public_input: PublicInput, n_vf_layers: int, stone_version: str) -> int:
    """The channel seed (Integrity's ``get_public_input_hash``)."""
    data = [n_vf_layers] if stone_version == STONE6 else []
    data += [
        public_input.log_n_steps,
        public_input.range_check_min,
        public_input.range_check_max,
        public_input.layout,
        *public_input.dynamic_params,
    ]
    for segment in public_input.segments:
        data += [segment.begin_addr, segment.stop_ptr]
    data += [public_input.padding_addr, public_input.padding_value, 1]  # 1 page: the main one
    data += [len(public_input.main_page), main_page_hash(public_input.main_page)]
    return poseidon_many(data)


@lru_cache(maxsize=4)
def main_page_hash(main_page: tuple[MemoryCell, ...]) -> int:
    """Pedersen chain over (address, value) pairs, then the number of felts hashed."""
    digest = 0
    for cell in main_page:
        digest = _pedersen(_pedersen(digest, cell.address), cell.value)
    return _pedersen(digest, 2 * len(main_page))


def first_interaction_element(proof: StarkProof, stone_version: str) -> int:
    """What the verifier draws first; tells stone5 and stone6 seeds apart."""
    seed = public_input_hash(
        proof.public_input, proof.config.n_verifier_friendly_commitment_layers, stone_version
    )
    channel = Channel(seed)
    channel.read([proof.unsent_commitment.traces_original])
    return channel.random_felt()


def commit(proof: StarkProof) -> Commitment:
    """The commitment phase, proof-of-work check included."""
    config, sent = proof.config, proof.unsent_commitment
    channel = Channel(
        public_input_hash(
            proof.public_input, config.n_verifier_friendly_commitment_layers, proof.stone_version
        )
    )
    channel.read([sent.traces_original])
    interaction_elements = channel.random_felts(proof.layout.n_interaction_elements)
    channel.read([sent.traces_interaction])
    composition_alpha = channel.random_felt()
    channel.read([sent.composition])
    oods_point = channel.random_felt()
    channel.read(sent.oods_values)
    oods_alpha = channel.random_felt()
    eval_points = []
    for inner_commitment in sent.fri_inner_layers:
        channel.read([inner_commitment])
        eval_points.append(channel.random_felt())
    channel.read(sent.fri_last_layer_coefficients)
    check_proof_of_work(channel.digest, config.proof_of_work_bits, sent.proof_of_work_nonce)
    channel.read([sent.proof_of_work_nonce])
    eval_domain_size = 2**config.log_eval_domain_size
    samples = [(channel.random_felt() % 2**128) % eval_domain_size for _ in range(config.n_queries)]
    return Commitment(
        interaction_elements=tuple(interaction_elements),
        composition_alpha=composition_alpha,
        oods_point=oods_point,
        oods_alpha=oods_alpha,
        fri_eval_points=tuple(eval_points),
        query_samples=tuple(samples),
    )


def check_proof_of_work(digest: int, n_bits: int, nonce: int) -> None:
    """Stone's keccak proof of work: keccak(keccak(magic || digest || n_bits) || nonce)
    must start with ``n_bits`` zero bits."""
    if not 0 <= nonce < 2**64:
        raise InvalidProof(f"proof-of-work nonce {nonce} is not a u64; the proof is corrupt")
    seed = _POW_MAGIC.to_bytes(8, "big") + digest.to_bytes(32, "big") + bytes([n_bits])
    work = _keccak(_keccak(seed) + nonce.to_bytes(8, "big"))
    if int.from_bytes(work[:16], "big") >= 2 ** (128 - n_bits):
        raise InvalidProof(
            "the proof-of-work nonce does not satisfy the proof's transcript: the proof is "
            "corrupt or was edited (Integrity would revert the initial transaction)"
        )


def fri_schedule(proof: StarkProof, commitment: Commitment) -> FriSchedule:
    """Queries, DEEP values and every FRI layer, ending with the last-layer check."""
    queries = commitment.queries
    points = query_points(queries, proof.config.log_eval_domain_size)
    values = deep_evaluations(proof, commitment, points)
    current = tuple(
        FriLayerQuery(q, y, FIELD_GENERATOR * inverse(x) % PRIME)
        for q, y, x in zip(queries, values, points, strict=True)
    )
    variables = [FriStateVariable(0, current)]
    positions = []
    steps = proof.config.fri.fri_step_sizes[1:]
    layers = proof.witness.fri_layers
    for k, (step, eval_point) in enumerate(zip(steps, commitment.fri_eval_points, strict=True)):
        folded: FoldedLayer = fold_layer(current, layers[k].leaves, step, eval_point)
        current = folded.queries
        variables.append(FriStateVariable(k + 1, current))
        positions.append(folded.sibling_positions)
    check_last_layer(current, proof.unsent_commitment.fri_last_layer_coefficients)
    return FriSchedule(
        queries=queries,
        constant=_state_constant(proof, commitment),
        variables=tuple(variables),
        sibling_positions=tuple(positions),
    )


def query_points(queries: Sequence[int], log_eval_domain_size: int) -> list[int]:
    """x of each query: the coset shift times the generator to the bit-reversed index."""
    generator = root_of_unity(2**log_eval_domain_size)
    return [
        FIELD_GENERATOR * pow(generator, bit_reverse(q, log_eval_domain_size), PRIME) % PRIME
        for q in queries
    ]


def deep_evaluations(proof: StarkProof, commitment: Commitment, points: Sequence[int]) -> list[int]:
    """The FRI input layer at the query points (Integrity's eval_oods_polynomial)."""
    witness, layout = proof.witness, proof.layout
    _check_decommitment_sizes(proof, len(points))
    oods_values = proof.unsent_commitment.oods_values
    coefficients = _powers(commitment.oods_alpha, len(oods_values))
    trace_generator = root_of_unity(2**proof.config.log_trace_domain_size)
    z = commitment.oods_point
    shifts = [
        (column, pow(trace_generator, offset, PRIME) * z % PRIME)
        for column, offsets in layout.mask
        for offset in offsets
    ]
    n1, n2 = layout.n_original_columns, layout.n_interaction_columns
    z_to_degree = pow(z, CONSTRAINT_DEGREE, PRIME)
    evaluations = []
    for i, x in enumerate(points):
        columns = (
            witness.traces_original.values[i * n1 : (i + 1) * n1]
            + witness.traces_interaction.values[i * n2 : (i + 1) * n2]
        )
        total = 0
        for k, (column, shift) in enumerate(shifts):
            total += coefficients[k] * (columns[column] - oods_values[k]) * inverse(x - shift)
        composition = witness.composition.values[
            i * CONSTRAINT_DEGREE : (i + 1) * CONSTRAINT_DEGREE
        ]
        denominator = inverse(x - z_to_degree)
        for j, value in enumerate(composition):
            k = len(shifts) + j
            total += coefficients[k] * (value - oods_values[k]) * denominator
        evaluations.append(total % PRIME)
    return evaluations


def _check_decommitment_sizes(proof: StarkProof, n_queries: int) -> None:
    layout = proof.layout
    tables = {
        "original trace": (proof.witness.traces_original, layout.n_original_columns),
        "interaction trace": (proof.witness.traces_interaction, layout.n_interaction_columns),
        "composition": (proof.witness.composition, CONSTRAINT_DEGREE),
    }
    for name, (table, n_columns) in tables.items():
        if len(table.values) != n_queries * n_columns:
            raise InconsistentProof(
                f"the {name} decommitment holds {len(table.values)} values; {n_queries} "
                f"queries x {n_columns} columns are needed: the annotations are incomplete"
            )
    if len(proof.unsent_commitment.oods_values) != layout.n_oods_values:
        raise InconsistentProof(
            f"{len(proof.unsent_commitment.oods_values)} OODS values; the {layout.name} "
            f"layout has {layout.n_oods_values}"
        )
    if len(proof.witness.fri_layers) != len(proof.config.fri.fri_step_sizes) - 1:
        raise InconsistentProof("one FRI layer witness per inner FRI layer is needed")


def check_commitment(expected: Commitment, actual: Commitment) -> None:
    """The replayed verifier messages must be the ones the annotations recorded."""
    for name in Commitment.__dataclass_fields__:
        if getattr(expected, name) != getattr(actual, name):
            raise InconsistentProof(
                f"the verifier's {name.replace('_', ' ')} replayed from the proof differ from "
                "the annotated ones: the annotations and the proof's parameters or public "
                "input do not belong together; re-run cpu_air_prover with "
                "--generate_annotations and pass its output unmodified"
            )


def _state_constant(proof: StarkProof, commitment: Commitment) -> FriStateConstant:
    fri = proof.config.fri
    return FriStateConstant(
        n_layers=fri.n_layers - 1,
        inner_layers=fri.inner_layers,
        commitment_hashes=proof.unsent_commitment.fri_inner_layers,
        eval_points=commitment.fri_eval_points,
        step_sizes=fri.fri_step_sizes[1:],
        last_layer_coefficients_hash=poseidon_many(
            proof.unsent_commitment.fri_last_layer_coefficients
        ),
    )


def _powers(alpha: int, count: int) -> list[int]:
    powers, value = [], 1
    for _ in range(count):
        powers.append(value)
        value = value * alpha % PRIME
    return powers


def _pedersen(a: int, b: int) -> int:
    return int(pedersen_hash(a, b))


def _keccak(data: bytes) -> bytes:
    return bytes(keccak.new(digest_bits=256, data=data).digest())
