"""The Fiat-Shamir channel of Stone's ``poseidon3`` channel hash, as Integrity implements it.

State: a digest and a counter. The verifier's random values are the first element of
``hades(digest, counter, 2)`` (counter then increments); every prover message replaces the
digest with ``poseidon(digest + 1, *message)`` and resets the counter.
"""

from __future__ import annotations

from collections.abc import Sequence

from prover.integrity.field import PRIME, hades, poseidon_many


class Channel:
    def __init__(self, seed: int) -> None:
        self.digest = seed % PRIME
        self.counter = 0

    def random_felt(self) -> int:
        value = hades(self.digest, self.counter, 2)[0]
        self.counter += 1
        return value

    def random_felts(self, count: int) -> list[int]:
        return [self.random_felt() for _ in range(count)]

    def read(self, values: Sequence[int]) -> None:
        """One prover message (a single felt or a vector: same hashing)."""
        self.digest = poseidon_many([(self.digest + 1) % PRIME, *values])
        self.counter = 0
