"""Jittered exponential backoff for reconnects (uniform in [cap/2, cap])."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    _attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; grows until ``reset``."""
        cap = min(self.max_s, self.initial_s * self.factor**self._attempt)
        self._attempt += 1
        return self.rng.uniform(cap / 2, cap)  # half jitter: never a zero-delay hammer

    def reset(self) -> None:
        self._attempt = 0
