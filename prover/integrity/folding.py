"""FRI layer folding as Integrity's split verifier runs it, and the state it carries between
transactions (``FriVerificationStateConstant`` / ``FriVerificationStateVariable``).

Each inner layer groups the current queries into cosets of ``2**step`` elements, fills the
missing coset elements from the layer witness (the "siblings", in coset order), folds each
coset into one value of the next layer, and moves to index ``index // 2**step``. After the
last inner layer the remaining queries must lie on the last-layer polynomial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prover.integrity.errors import InconsistentProof, InvalidProof
from prover.integrity.field import PRIME, bit_reverse, horner, inverse, root_of_unity
from prover.integrity.model import TableCommitmentConfig

MAX_COSET_LOG = 4  # Integrity's fri steps are 1..4: cosets of at most 16 elements
# The order-16 subgroup in bit-reversed order; its first 2**k elements are the order-2**k one.
FRI_GROUP = tuple(pow(root_of_unity(16), bit_reverse(j, 4), PRIME) for j in range(16))


@dataclass(frozen=True)
class FriLayerQuery:
    index: int
    y_value: int
    x_inv_value: int


@dataclass(frozen=True)
class FriStateConstant:
    n_layers: int  # inner layers (fri_step_list length - 1)
    inner_layers: tuple[TableCommitmentConfig, ...]
    commitment_hashes: tuple[int, ...]
    eval_points: tuple[int, ...]
    step_sizes: tuple[int, ...]  # fri_step_list[1:]
    last_layer_coefficients_hash: int


@dataclass(frozen=True)
class FriStateVariable:
    iteration: int  # inner layers already folded
    queries: tuple[FriLayerQuery, ...]


@dataclass(frozen=True)
class FoldedLayer:
    queries: tuple[FriLayerQuery, ...]
    sibling_positions: tuple[tuple[int, int], ...]  # (coset index, position in coset)


def fold_layer(
    queries: Sequence[FriLayerQuery], siblings: Sequence[int], step: int, eval_point: int
) -> FoldedLayer:
    """One inner FRI layer: the next layer's queries, consuming exactly all siblings."""
    coset_size = 2**step
    next_queries: list[FriLayerQuery] = []
    positions: list[tuple[int, int]] = []
    used = 0
    i = 0
    while i < len(queries):
        coset = queries[i].index // coset_size
        elements: list[int] = []
        x_inv = 0
        for j in range(coset_size):
            if i < len(queries) and queries[i].index == coset * coset_size + j:
                elements.append(queries[i].y_value)
                x_inv = queries[i].x_inv_value * FRI_GROUP[j] % PRIME
                i += 1
            else:
                if used == len(siblings):
                    raise _sibling_count_error(len(siblings), "more")
                elements.append(siblings[used])
                positions.append((coset, j))
                used += 1
        value = fri_formula(elements, eval_point, x_inv)
        next_queries.append(FriLayerQuery(coset, value, pow(x_inv, coset_size, PRIME)))
    if used != len(siblings):
        raise _sibling_count_error(len(siblings), f"only {used}")
    return FoldedLayer(tuple(next_queries), tuple(positions))


def fri_formula(values: Sequence[int], eval_point: int, x_inv: int) -> int:
    """Folds a coset of 2, 4, 8 or 16 values (bit-reversed order) into one."""
    size = len(values)
    if size == 2:
        f_x, f_minus_x = values
        return (f_x + f_minus_x + eval_point * x_inv * (f_x - f_minus_x)) % PRIME
    half = size // 2
    twist = inverse(root_of_unity(size))
    low = fri_formula(values[:half], eval_point, x_inv)
    high = fri_formula(values[half:], eval_point, x_inv * twist % PRIME)
    return fri_formula((low, high), pow(eval_point, half, PRIME), pow(x_inv, half, PRIME))


def check_last_layer(queries: Sequence[FriLayerQuery], coefficients: Sequence[int]) -> None:
    """What ``verify_proof_final`` asserts: every query lies on the last-layer polynomial."""
    for query in queries:
        if horner(coefficients, inverse(query.x_inv_value)) != query.y_value:
            raise InvalidProof(
                f"FRI last layer check fails at query index {query.index}: the proof does not "
                "verify (Integrity would revert the final transaction); do not submit it, "
                "prove again"
            )


def _sibling_count_error(given: int, needed: str) -> InconsistentProof:
    return InconsistentProof(
        f"an FRI layer witness has {given} sibling values but the queries need {needed}: "
        "the FRI decommitment annotations are incomplete or from another proof"
    )
