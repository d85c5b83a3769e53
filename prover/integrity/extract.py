"""From annotation lines to the proof's commitments and witness (what Integrity reads), plus
the verifier messages and decommitment row labels used to cross-check the replay.

Every protocol line must belong to a known part of the proof; unknown paths are refused
rather than skipped, so nothing the prover sent can be silently left out of the calldata.
Merkle authentications of the trace tables are taken as Integrity's own tooling takes them
(all ``Data`` values of the table, then all ``Hash`` values).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from prover.integrity.annotations import (
    DATA,
    FIELD_ELEMENT,
    FIELD_ELEMENTS,
    HASH,
    NUMBER,
    AnnotationLine,
)
from prover.integrity.errors import InconsistentProof, MalformedProof
from prover.integrity.layouts import Layout
from prover.integrity.model import (
    FriLayerWitness,
    StarkUnsentCommitment,
    StarkWitness,
    TableWitness,
)
from prover.integrity.replay import Commitment

ORIGINAL = "STARK/Original/Commit on Trace"
INTERACTION = "STARK/Interaction/Commit on Trace"
COMPOSITION = "STARK/Out Of Domain Sampling/Commit on Trace"
OODS_VALUES = "STARK/Out Of Domain Sampling/OODS values"
LAST_LAYER = "STARK/FRI/Commitment/Last Layer"
PROOF_OF_WORK = "STARK/FRI/Proof of Work"
QUERY_INDICES = "STARK/FRI/QueryIndices"
_ROW_LABEL = re.compile(r"Row (\d+), Column (\d+): ")

Key = tuple[bool, str, str]  # (sent by the prover, path, kind)
Position = tuple[int, int]  # (row, column) of a decommitted value


def fri_commitment_path(layer: int) -> str:
    return f"STARK/FRI/Commitment/Layer {layer}"


def trace_path(table: int) -> str:
    return f"STARK/FRI/Decommitment/Layer 0/Virtual Oracle/Trace {table}"


def fri_decommitment_path(layer: int) -> str:
    return f"STARK/FRI/Decommitment/Layer {layer}"


@dataclass(frozen=True)
class AnnotatedProof:
    unsent_commitment: StarkUnsentCommitment
    witness: StarkWitness
    verifier_messages: Commitment
    trace_positions: tuple[tuple[Position, ...], ...]  # per table: original, interaction, comp.
    fri_positions: tuple[tuple[Position, ...], ...]  # per inner FRI layer


class _Groups:
    """Protocol lines grouped by (direction, path, kind), in their original order."""

    def __init__(self, lines: Sequence[AnnotationLine], allowed: set[Key]) -> None:
        self._groups: dict[Key, list[AnnotationLine]] = defaultdict(list)
        for line in lines:
            key = (line.from_prover, line.path, line.kind)
            if key not in allowed:
                raise MalformedProof(
                    f"annotation line {line.number} ({line.path}: {line.kind}) is not part of "
                    "a proof with these parameters (layout, FRI steps): the annotations belong "
                    "to another proof or were edited"
                )
            self._groups[key].append(line)

    def lines(self, from_prover: bool, path: str, kind: str) -> list[AnnotationLine]:
        return self._groups.get((from_prover, path, kind), [])

    def values(self, from_prover: bool, path: str, kind: str) -> tuple[int, ...]:
        return tuple(v for line in self.lines(from_prover, path, kind) for v in line.values)

    def single(self, from_prover: bool, path: str, kind: str) -> int:
        values = self.values(from_prover, path, kind)
        if len(values) != 1:
            raise InconsistentProof(
                f"expected exactly one {kind} at {path!r} in the annotations, found "
                f"{len(values)}: the annotations are incomplete or duplicated"
            )
        return values[0]


def extract(lines: Sequence[AnnotationLine], layout: Layout, n_fri_layers: int) -> AnnotatedProof:
    groups = _Groups(lines, _allowed_keys(n_fri_layers))
    tables = [_table(groups, trace_path(t)) for t in range(3)]
    fri_layers = [_fri_layer(groups, layer) for layer in range(1, n_fri_layers)]
    unsent = StarkUnsentCommitment(
        traces_original=groups.single(True, ORIGINAL, HASH),
        traces_interaction=groups.single(True, INTERACTION, HASH),
        composition=groups.single(True, COMPOSITION, HASH),
        oods_values=groups.values(True, OODS_VALUES, FIELD_ELEMENTS),
        fri_inner_layers=tuple(
            groups.single(True, fri_commitment_path(layer), HASH)
            for layer in range(1, n_fri_layers)
        ),
        fri_last_layer_coefficients=groups.values(True, LAST_LAYER, FIELD_ELEMENTS),
        proof_of_work_nonce=groups.single(True, PROOF_OF_WORK, DATA),
    )
    witness = StarkWitness(
        traces_original=tables[0][0],
        traces_interaction=tables[1][0],
        composition=tables[2][0],
        fri_layers=tuple(layer for layer, _ in fri_layers),
    )
    return AnnotatedProof(
        unsent_commitment=unsent,
        witness=witness,
        verifier_messages=_verifier_messages(groups, n_fri_layers),
        trace_positions=tuple(positions for _, positions in tables),
        fri_positions=tuple(positions for _, positions in fri_layers),
    )


def _allowed_keys(n_fri_layers: int) -> set[Key]:
    allowed: set[Key] = {
        (True, ORIGINAL, HASH),
        (True, INTERACTION, HASH),
        (True, COMPOSITION, HASH),
        (True, OODS_VALUES, FIELD_ELEMENTS),
        (True, LAST_LAYER, FIELD_ELEMENTS),
        (True, PROOF_OF_WORK, DATA),
        (False, "STARK/Interaction", FIELD_ELEMENT),
        (False, "STARK/Original", FIELD_ELEMENT),
        (False, OODS_VALUES, FIELD_ELEMENT),
        (False, "STARK/Out Of Domain Sampling", FIELD_ELEMENT),
        (False, QUERY_INDICES, NUMBER),
    }
    for table in range(3):
        allowed |= {(True, trace_path(table), kind) for kind in (FIELD_ELEMENT, DATA, HASH)}
    for layer in range(1, n_fri_layers):
        allowed.add((True, fri_commitment_path(layer), HASH))
        allowed.add((False, fri_commitment_path(layer + 1), FIELD_ELEMENT))
        allowed |= {(True, fri_decommitment_path(layer), kind) for kind in (FIELD_ELEMENT, HASH)}
    return allowed


def _table(groups: _Groups, path: str) -> tuple[TableWitness, tuple[Position, ...]]:
    leaves = groups.lines(True, path, FIELD_ELEMENT)
    witness = TableWitness(
        values=tuple(line.values[0] for line in leaves),
        authentications=groups.values(True, path, DATA) + groups.values(True, path, HASH),
    )
    return witness, tuple(_position(line) for line in leaves)


def _fri_layer(groups: _Groups, layer: int) -> tuple[FriLayerWitness, tuple[Position, ...]]:
    path = fri_decommitment_path(layer)
    leaves = groups.lines(True, path, FIELD_ELEMENT)
    witness = FriLayerWitness(
        leaves=tuple(line.values[0] for line in leaves),
        authentications=groups.values(True, path, HASH),
    )
    return witness, tuple(_position(line) for line in leaves)


def _position(line: AnnotationLine) -> Position:
    match = _ROW_LABEL.fullmatch(line.label)
    if match is None:
        raise MalformedProof(
            f"annotation line {line.number}: decommitted value without a 'Row r, Column c' "
            "label; the annotations were edited or truncated"
        )
    return int(match[1]), int(match[2])


def _verifier_messages(groups: _Groups, n_fri_layers: int) -> Commitment:
    return Commitment(
        interaction_elements=groups.values(False, "STARK/Interaction", FIELD_ELEMENT),
        composition_alpha=groups.single(False, "STARK/Original", FIELD_ELEMENT),
        oods_point=groups.single(False, OODS_VALUES, FIELD_ELEMENT),
        oods_alpha=groups.single(False, "STARK/Out Of Domain Sampling", FIELD_ELEMENT),
        fri_eval_points=tuple(
            groups.single(False, fri_commitment_path(layer + 1), FIELD_ELEMENT)
            for layer in range(1, n_fri_layers)
        ),
        query_samples=groups.values(False, QUERY_INDICES, NUMBER),
    )
