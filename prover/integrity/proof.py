"""``parse_proof``: a Stone proof JSON (``cpu_air_prover --generate_annotations``) to a
checked ``StarkProof``.

Checks, in order: JSON shape and types; parameters Integrity supports (Poseidon channel,
keccak commitments, FRI limits); public input (layout, segments, one memory page);
annotations (grammar, exact match with ``proof_hex``, sizes); Stone version (the one
whose channel seed reproduces the annotated verifier messages); then the verifier replay
(proof of work, queries, DEEP values, FRI folding, last layer) and the decommitment row
labels against the replayed queries. Any failure raises an ``IntegrityProofError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from prover.integrity.annotations import check_against_proof_bytes, parse_annotations
from prover.integrity.errors import (
    InconsistentProof,
    MalformedProof,
    MissingAnnotations,
    UnsupportedProof,
)
from prover.integrity.extract import AnnotatedProof, Position, extract
from prover.integrity.folding import MAX_COSET_LOG
from prover.integrity.layouts import CONSTRAINT_DEGREE, CPU_COMPONENT_HEIGHT, Layout
from prover.integrity.model import (
    FriConfig,
    StarkConfig,
    StarkProof,
    TableCommitmentConfig,
    VectorCommitmentConfig,
)
from prover.integrity.public_input import parse_public_input
from prover.integrity.replay import (
    STONE5,
    STONE6,
    FriSchedule,
    check_commitment,
    commit,
    first_interaction_element,
    fri_schedule,
)
from prover.integrity.stone_json import StoneParameters, field, mapping, parameters

# Integrity's limits (fri_config.cairo, proof_of_work/config.cairo).
_MIN_FRI_LAYERS, _MAX_FRI_LAYERS = 2, 15
_MAX_LOG_LAST_LAYER = 15
_MIN_POW_BITS, _MAX_POW_BITS = 20, 50  # [min, max)
_MAX_LOG_EVAL_DOMAIN = 64  # queries_to_points: 'Eval domain too big'


def parse_proof(document: object) -> StarkProof:
    """Parse and check a Stone proof (the decoded JSON object) for Integrity."""
    root = mapping(document, "proof")
    annotations = _annotation_lines(root)
    stone = parameters(field(root, "proof_parameters", "proof"))
    layout, public_input, n_steps = parse_public_input(field(root, "public_input", "proof"))
    config = stark_config(stone, layout, n_steps)
    lines = parse_annotations(annotations)
    check_against_proof_bytes(lines, _proof_bytes(root))
    annotated = extract(lines, layout, config.fri.n_layers)
    _check_sizes(annotated, config, layout)
    draft = StarkProof(
        config=config,
        public_input=public_input,
        unsent_commitment=annotated.unsent_commitment,
        witness=annotated.witness,
        layout=layout,
        hasher=stone.hasher,
        stone_version=STONE6,
    )
    proof = _with_detected_version(draft, annotated)
    commitment = commit(proof)
    check_commitment(annotated.verifier_messages, commitment)
    _check_positions(annotated, fri_schedule(proof, commitment), layout)
    return proof


def stark_config(stone: StoneParameters, layout: Layout, n_steps: int) -> StarkConfig:
    """Integrity's StarkConfig for these parameters, checked against Integrity's limits."""
    _check_fri_limits(stone)
    log_trace = _log2(CPU_COMPONENT_HEIGHT * n_steps, "16 * n_steps (the trace length)")
    log_eval = log_trace + stone.log_n_cosets
    if log_eval > _MAX_LOG_EVAL_DOMAIN:
        raise UnsupportedProof(
            f"evaluation domain 2**{log_eval} exceeds Integrity's 2**64 (log_n_cosets "
            f"{stone.log_n_cosets}): prove with a smaller log_n_cosets"
        )
    n_vf = stone.n_verifier_friendly_commitment_layers

    def table(n_columns: int, height: int) -> TableCommitmentConfig:
        return TableCommitmentConfig(n_columns, VectorCommitmentConfig(height, n_vf))

    heights, height = [], log_eval
    for step in stone.fri_step_list[1:]:
        height -= step
        heights.append(height)
    log_last = _log2(stone.last_layer_degree_bound, "last_layer_degree_bound")
    if sum(stone.fri_step_list) + log_last != log_trace:
        raise InconsistentProof(
            f"fri_step_list {list(stone.fri_step_list)} and last_layer_degree_bound "
            f"{stone.last_layer_degree_bound} do not add up to the trace size 2**{log_trace}: "
            "the proof parameters do not match the public input"
        )
    fri = FriConfig(
        log_input_size=log_eval,
        n_layers=len(stone.fri_step_list),
        inner_layers=tuple(
            table(2**step, h) for step, h in zip(stone.fri_step_list[1:], heights, strict=True)
        ),
        fri_step_sizes=stone.fri_step_list,
        log_last_layer_degree_bound=log_last,
    )
    return StarkConfig(
        traces_original=table(layout.n_original_columns, log_eval),
        traces_interaction=table(layout.n_interaction_columns, log_eval),
        composition=table(CONSTRAINT_DEGREE, log_eval),
        fri=fri,
        proof_of_work_bits=stone.proof_of_work_bits,
        log_trace_domain_size=log_trace,
        n_queries=stone.n_queries,
        log_n_cosets=stone.log_n_cosets,
        n_verifier_friendly_commitment_layers=n_vf,
    )


def _annotation_lines(root: Mapping[str, Any]) -> list[str]:
    annotations = root.get("annotations")
    if annotations is None or annotations == []:
        raise MissingAnnotations(
            "the proof has no annotations, and Integrity's calldata is built from them: "
            "re-run cpu_air_prover with --generate_annotations (same parameter, config and "
            "input files) and use that proof file"
        )
    if not isinstance(annotations, list) or not all(isinstance(a, str) for a in annotations):
        raise MalformedProof('"annotations" must be a list of strings, as Stone writes it')
    return annotations


def _proof_bytes(root: Mapping[str, Any]) -> bytes:
    proof_hex = root.get("proof_hex")
    if not isinstance(proof_hex, str) or not proof_hex.startswith("0x"):
        raise MalformedProof(
            'the proof has no "proof_hex" string: pass the JSON cpu_air_prover wrote, '
            "unmodified (its annotations are checked against those bytes)"
        )
    try:
        return bytes.fromhex(proof_hex[2:])
    except ValueError as exc:
        raise MalformedProof('"proof_hex" is not valid hex: the proof file is corrupt') from exc


def _check_fri_limits(stone: StoneParameters) -> None:
    steps = stone.fri_step_list
    problems = []
    if not _MIN_FRI_LAYERS <= len(steps) <= _MAX_FRI_LAYERS:
        problems.append(f"{len(steps)} FRI layers (Integrity: 2..15)")
    if steps and steps[0] != 0:
        problems.append("a first FRI step other than 0")
    if any(not 1 <= step <= MAX_COSET_LOG for step in steps[1:]):
        problems.append("an inner FRI step outside 1..4")
    if not _MIN_POW_BITS <= stone.proof_of_work_bits < _MAX_POW_BITS:
        problems.append(f"{stone.proof_of_work_bits} proof-of-work bits (Integrity: 20..49)")
    if stone.last_layer_degree_bound > 2**_MAX_LOG_LAST_LAYER:
        problems.append("a last layer degree bound above 2**15")
    if problems:
        raise UnsupportedProof(
            f"Integrity cannot verify a proof with {', '.join(problems)}: prove again with "
            "parameters inside Integrity's limits (see prover.fri)"
        )


def _log2(value: int, what: str) -> int:
    if value <= 0 or value & (value - 1):
        raise InconsistentProof(f"{what} = {value} is not a power of two")
    return value.bit_length() - 1


def _check_sizes(annotated: AnnotatedProof, config: StarkConfig, layout: Layout) -> None:
    sent, witness = annotated.unsent_commitment, annotated.witness
    expected = {
        "OODS values": (len(sent.oods_values), layout.n_oods_values),
        "last layer coefficients": (
            len(sent.fri_last_layer_coefficients),
            2**config.fri.log_last_layer_degree_bound,
        ),
        "verifier query indices": (
            len(annotated.verifier_messages.query_samples),
            config.n_queries,
        ),
    }
    for what, (found, wanted) in expected.items():
        if found != wanted:
            raise InconsistentProof(
                f"the annotations hold {found} {what}, a {layout.name} proof with these "
                f"parameters has {wanted}: the annotations are incomplete or from another proof"
            )
    tables = (witness.traces_original, witness.traces_interaction, witness.composition)
    columns = (layout.n_original_columns, layout.n_interaction_columns, CONSTRAINT_DEGREE)
    for table, n_columns in zip(tables, columns, strict=True):
        if not table.values or len(table.values) % n_columns:
            raise InconsistentProof(
                f"a trace decommitment holds {len(table.values)} values, not a multiple of its "
                f"{n_columns} columns: the annotations are incomplete"
            )


def _with_detected_version(draft: StarkProof, annotated: AnnotatedProof) -> StarkProof:
    """stone5 and stone6 differ only in the channel seed: keep the one that reproduces the
    verifier's first annotated message."""
    annotated_elements = annotated.verifier_messages.interaction_elements
    for version in (STONE6, STONE5):
        if annotated_elements[:1] == (first_interaction_element(draft, version),):
            return replace(draft, stone_version=version)
    raise InconsistentProof(
        "neither the stone6 nor the stone5 channel seed reproduces the annotated interaction "
        "elements: the public input or parameters were edited, or the prover is a Stone "
        "revision Integrity does not support (it needs the 2024 stone5/stone6 builds)"
    )


def _check_positions(annotated: AnnotatedProof, schedule: FriSchedule, layout: Layout) -> None:
    """Decommitted values must sit at the replayed query rows / coset siblings."""
    columns = (layout.n_original_columns, layout.n_interaction_columns, CONSTRAINT_DEGREE)
    for positions, n_columns in zip(annotated.trace_positions, columns, strict=True):
        wanted = tuple((q, c) for q in schedule.queries for c in range(n_columns))
        _same_positions(positions, wanted, "trace decommitment")
    for layer, (positions, wanted) in enumerate(
        zip(annotated.fri_positions, schedule.sibling_positions, strict=True), start=1
    ):
        _same_positions(positions, wanted, f"FRI layer {layer} decommitment")


def _same_positions(found: tuple[Position, ...], wanted: tuple[Position, ...], what: str) -> None:
    if found != wanted:
        raise InconsistentProof(
            f"the {what} annotations list {len(found)} values at rows/columns other than the "
            f"{len(wanted)} the verifier queries: the annotations are incomplete, reordered "
            "or from another proof"
        )
