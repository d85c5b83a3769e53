"""Arithmetic in Starknet's field and the small primitives the verifier replay needs."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from poseidon_py.poseidon_hash import hades_permutation, poseidon_hash_many

from prover.integrity.errors import InvalidProof

PRIME = 2**251 + 17 * 2**192 + 1
FIELD_GENERATOR = 3  # generator of the multiplicative group, Stone's coset shift
MONTGOMERY_R = pow(2, 256, PRIME)  # Stone writes decommitted trace values in Montgomery form


def inverse(value: int) -> int:
    """Multiplicative inverse. Zero has none: the verifier would fail on it too."""
    if value % PRIME == 0:
        raise InvalidProof(
            "the proof makes the verifier divide by zero (a query hit the OODS point or a "
            "zero x value); Integrity would revert on it: prove again"
        )
    return pow(value, -1, PRIME)


@cache
def root_of_unity(order: int) -> int:
    """The generator of the subgroup of size ``order`` (a power of two) Stone and Integrity
    use: ``3 ** ((PRIME - 1) / order)``."""
    return pow(FIELD_GENERATOR, (PRIME - 1) // order, PRIME)


def bit_reverse(value: int, n_bits: int) -> int:
    """``value`` with its lowest ``n_bits`` bits in reverse order."""
    return int(format(value, f"0{n_bits}b")[::-1], 2) if n_bits else 0


def horner(coefficients: Sequence[int], point: int) -> int:
    """Evaluates sum(coefficients[i] * point**i)."""
    result = 0
    for coefficient in reversed(coefficients):
        result = (coefficient + point * result) % PRIME
    return result


def poseidon_many(values: Sequence[int]) -> int:
    """Cairo's ``PoseidonTrait::new().update(a)...finalize()`` (the sponge over all values)."""
    return int(poseidon_hash_many(list(values)))


def hades(a: int, b: int, c: int) -> tuple[int, int, int]:
    """The Poseidon permutation (Cairo's ``hades_permutation``)."""
    state = hades_permutation([a, b, c])
    return int(state[0]), int(state[1]), int(state[2])


def short_string(text: str) -> int:
    """A Cairo short string (ASCII, at most 31 characters) as a felt."""
    return int.from_bytes(text.encode("ascii"), "big")
