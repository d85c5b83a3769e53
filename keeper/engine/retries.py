"""When a failing job gives up a step, and when a failed job runs again. Pure: no I/O.

Two clocks, two questions:

- *A step keeps failing* (node down, prover crashing, receipt not there): it is retried
  with a growing backoff for as long as the stream itself would ride out an outage
  (``stream.stall_deadline_s``), not for a fixed number of attempts; then the run fails.
- *A run failed*: while its epoch is still the router's current one, the job runs again
  after a cool-down that doubles per run (``jobs.retry_cooldown_s`` up to
  ``jobs.retry_cooldown_max_s``), forever, unless a money rule says stop: once
  ``jobs.max_paid_failures`` failures of the epoch cost money (a reverted transaction,
  an Atlantic query limit), the job is *parked* and waits for the operator
  (``obsqra-keeper jobs retry EPOCH``). Nothing is ever parked silently: parked epochs
  degrade ``/healthz`` and are counted in ``keeper_jobs_parked``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryRules:
    step_window_s: float = 300.0
    cooldown_s: float = 60.0
    cooldown_max_s: float = 3600.0
    max_paid_failures: int = 3

    def __post_init__(self) -> None:
        if self.step_window_s <= 0 or self.cooldown_s <= 0:
            raise ValueError("step_window_s and cooldown_s must be > 0")
        if self.cooldown_max_s < self.cooldown_s:
            raise ValueError("cooldown_max_s must be >= cooldown_s")
        if self.max_paid_failures < 1:
            raise ValueError("max_paid_failures must be >= 1")

    def step_gives_up(self, failing_since: datetime, now: datetime) -> bool:
        """Has the current step been failing for longer than the window?"""
        return (now - failing_since).total_seconds() >= self.step_window_s

    def cooldown(self, run: int) -> float:
        """Seconds before run ``run + 1`` after run ``run`` failed (run counts from 1)."""
        exponent = min(max(run, 1) - 1, 32)  # 2**32 * anything > any sane cap
        return float(min(self.cooldown_max_s, self.cooldown_s * 2**exponent))

    def retry_after(self, *, now: datetime, run: int, paid_failures: int) -> datetime | None:
        """When the failed run ``run`` may be followed by the next; None: parked (the
        epoch's ``paid_failures``, this failure included, reached the money limit)."""
        if paid_failures >= self.max_paid_failures:
            return None
        return now + timedelta(seconds=self.cooldown(run))


def step_backoff_s(attempts: int, poll_interval_s: float, cap_s: float = 60.0) -> float:
    """Backoff before retrying a failed step: doubles per attempt, capped."""
    exponent = min(max(0, attempts - 1), 32)
    return float(min(cap_s, poll_interval_s * 2**exponent))
