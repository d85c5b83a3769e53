"""Prometheus metrics of the keeper, in a registry of their own.

A private ``CollectorRegistry`` (not prometheus-client's global one) keeps each
``KeeperMetrics`` independent: tests build as many as they like, and nothing a library
registers globally leaks into ``/metrics``.

Series (names are part of the operator contract, see docs/operations.md):

- ``keeper_events_total{kind}``                    events ingested from the stream
- ``keeper_events_quarantined_total``              events that could not be decoded/applied
- ``keeper_jobs{state}``                           jobs per state (gauge, from the store)
- ``keeper_proof_seconds{prover}``                 proof wall time (histogram)
- ``keeper_fees_total{purpose,unit}``              fees and charges paid (fri, usd…)
- ``keeper_prover_fallbacks_total{from,to}``       proofs handed to the next prover
- ``keeper_stream_lag_blocks``                     chain head minus the stream cursor
- ``keeper_stream_cursor_block``                   the stream's stored cursor (last block)
- ``keeper_stream_head_block``                     the stream server's head (DNA), if known
- ``keeper_stream_finalized_block``                the last block the stream said is final
- ``keeper_stream_source_info{source}``            always 1; the configured stream source
- ``keeper_last_successful_job_timestamp_seconds`` Unix time of the last completed job
- ``keeper_prover_available{prover}``              1 when the prover can take work
- ``keeper_build_info{version}``                   always 1; the running version
- ``keeper_jobs_parked``                           epochs whose job is parked
- ``keeper_jobs_failing``                          epochs whose job failed, waiting to run again
- ``keeper_atlantic_out_of_credit``                1 while Atlantic refuses for lack of credit
- ``keeper_account_balance_strk``                  the keeper account's STRK (fee token)
- ``keeper_rebalances_funded``                     rebalances that balance pays for
- ``keeper_funds_min_rebalances``                  the configured funds.min_rebalances
- ``keeper_jobs_waiting_for_funds``                jobs held back: insufficient_funds
- ``keeper_cost_per_allocation_strk{prover}``      median STRK of an executed allocation
- ``keeper_verification_cost_per_allocation_strk{prover}`` ... of its verification alone
- ``keeper_due_to_executed_seconds``               a job's detection to its confirmation
- ``keeper_stream_last_progress_timestamp_seconds`` Unix time the stream last advanced
- ``keeper_waiting_for_governance``                1 while a pending change holds a rebalance
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from keeper.stream.eventlog import StreamPosition

# Local Stone takes seconds to minutes, Atlantic up to its deadline (an hour by default).
PROOF_SECONDS_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, math.inf)
# Due to executed: a dev job takes seconds, Stone + Integrity minutes, a wait for
# Atlantic, for funds or for a governance change hours.
DUE_TO_EXECUTED_BUCKETS = (
    5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400, math.inf,
)
FRI_PER_STRK = 10**18


def _version() -> str:
    try:
        return metadata.version("obsqra-keeper")
    except metadata.PackageNotFoundError:
        return "unknown"


class KeeperMetrics:
    """The keeper's series and the calls the daemon loop makes to update them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._events = Counter(
            "keeper_events_total", "Contract events ingested, by kind.", ["kind"], registry=reg
        )
        self._quarantined = Counter(
            "keeper_events_quarantined_total",
            "Events set aside because they could not be decoded or applied.",
            registry=reg,
        )
        self._jobs = Gauge("keeper_jobs", "Jobs in the store, by state.", ["state"], registry=reg)
        self._proof_seconds = Histogram(
            "keeper_proof_seconds",
            "Wall time of one proof, by prover.",
            ["prover"],
            buckets=PROOF_SECONDS_BUCKETS,
            registry=reg,
        )
        self._fees = Counter(
            "keeper_fees_total",
            "Fees and charges paid, by purpose and unit (fri for L2 fees, usd for Atlantic).",
            ["purpose", "unit"],
            registry=reg,
        )
        self._fallbacks = Counter(
            "keeper_prover_fallbacks_total",
            "Proofs handed from one prover to the next after a failure.",
            ["from", "to"],
            registry=reg,
        )
        self._lag = Gauge(
            "keeper_stream_lag_blocks", "Chain head minus the stream cursor.", registry=reg
        )
        self._stream_cursor = Gauge(
            "keeper_stream_cursor_block",
            "Block of the stream's stored cursor (everything up to it is ingested).",
            registry=reg,
        )
        self._stream_head = Gauge(
            "keeper_stream_head_block",
            "The stream server's head block, as it last said (DNA stream; absent otherwise).",
            registry=reg,
        )
        self._stream_finalized = Gauge(
            "keeper_stream_finalized_block",
            "The last block the stream reported finalized (no rollback below it).",
            registry=reg,
        )
        self._stream_source = Gauge(
            "keeper_stream_source_info", "The stream source (always 1).", ["source"], registry=reg
        )
        self._last_success = Gauge(
            "keeper_last_successful_job_timestamp_seconds",
            "Unix time of the last job that completed (allocation submitted and accepted).",
            registry=reg,
        )
        self._prover_available = Gauge(
            "keeper_prover_available",
            "1 when the prover can take work (binary present, circuit breaker closed).",
            ["prover"],
            registry=reg,
        )
        self._parked = Gauge(
            "keeper_jobs_parked",
            "Epochs whose job is parked: failed, and a money rule stopped automatic runs "
            "(obsqra-keeper jobs retry EPOCH).",
            registry=reg,
        )
        self._failing = Gauge(
            "keeper_jobs_failing",
            "Epochs whose job failed and runs again after its cool-down (the current epoch's; "
            "parked ones are keeper_jobs_parked).",
            registry=reg,
        )
        self._atlantic_out_of_credit = Gauge(
            "keeper_atlantic_out_of_credit",
            "1 while Atlantic refuses queries for lack of credit (no Atlantic call is made).",
            registry=reg,
        )
        self._balance = Gauge(
            "keeper_account_balance_strk",
            "The keeper account's fee-token (STRK) balance, read at start-up, after each "
            "transaction and every funds.poll_interval_s.",
            registry=reg,
        )
        self._rebalances_funded = Gauge(
            "keeper_rebalances_funded",
            "Rebalances the balance pays for at the median cost per executed allocation "
            "(funds.default_cost_per_allocation_fri before the first).",
            registry=reg,
        )
        self._min_rebalances = Gauge(
            "keeper_funds_min_rebalances",
            "funds.min_rebalances: /healthz is degraded below it.",
            registry=reg,
        )
        self._waiting_for_funds = Gauge(
            "keeper_jobs_waiting_for_funds",
            "Jobs that send nothing because the balance does not pay for all their remaining "
            "transactions (insufficient_funds); they resume once the account is funded.",
            registry=reg,
        )
        self._cost_per_allocation = Gauge(
            "keeper_cost_per_allocation_strk",
            "Median STRK paid per executed allocation (verification + execution), by the "
            "prover of the job, over its newest executed allocations.",
            ["prover"],
            registry=reg,
        )
        self._verification_cost = Gauge(
            "keeper_verification_cost_per_allocation_strk",
            "Median STRK of the fact registration transactions per executed allocation, by "
            "prover (Integrity's split verification for Stone).",
            ["prover"],
            registry=reg,
        )
        self._due_to_executed = Histogram(
            "keeper_due_to_executed_seconds",
            "From the job's detection (the rebalance due) to its confirmed execution.",
            buckets=DUE_TO_EXECUTED_BUCKETS,
            registry=reg,
        )
        self._stream_progress = Gauge(
            "keeper_stream_last_progress_timestamp_seconds",
            "Unix time the stream last advanced (a new block or a cursor move).",
            registry=reg,
        )
        self._waiting_for_governance = Gauge(
            "keeper_waiting_for_governance",
            "1 while a due rebalance waits for a pending governance change (timelock).",
            registry=reg,
        )
        self._ahead = Counter(
            "keeper_ahead_proofs",
            "Proofs made ahead of a due rebalance, by what became of them (made, used, "
            "discarded: their inputs changed first).",
            ["outcome"],
            registry=reg,
        )
        for outcome in ("made", "used", "discarded"):
            self._ahead.labels(outcome=outcome)  # 0 from the start: rates need a first sample
        self._ahead_discarded_cpu = Counter(
            "keeper_ahead_discarded_cpu_seconds",
            "CPU seconds (trace + Stone) of proofs made ahead that no job used.",
            registry=reg,
        )
        build = Gauge("keeper_build_info", "The running keeper version.", ["version"], registry=reg)
        build.labels(version=_version()).set(1)
        self._job_states_seen: set[str] = set()

    def event_ingested(self, kind: str) -> None:
        self._events.labels(kind=kind).inc()

    def event_quarantined(self, count: int = 1) -> None:
        """``count`` events newly set aside (the stream's event log calls this)."""
        if count < 0:
            raise ValueError(f"quarantined events must be counted up, got {count!r}")
        self._quarantined.inc(count)

    def job_state_counts(self, counts: Mapping[str, int]) -> None:
        """Set ``keeper_jobs`` from a full count per state; states now absent read 0."""
        for state in self._job_states_seen - counts.keys():
            self._jobs.labels(state=state).set(0)
        for state, count in counts.items():
            self._jobs.labels(state=state).set(count)
        self._job_states_seen |= counts.keys()

    def proof_done(self, prover: str, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"proof time must be a finite non-negative number, got {seconds!r}")
        self._proof_seconds.labels(prover=prover).observe(seconds)

    def fee_paid(self, purpose: str, amount: float, unit: str) -> None:
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"fee must be a finite non-negative amount, got {amount!r}")
        self._fees.labels(purpose=purpose, unit=unit).inc(amount)

    def fallback(self, frm: str, to: str) -> None:
        self._fallbacks.labels(**{"from": frm, "to": to}).inc()

    def stream_lag(self, blocks: int) -> None:
        self._lag.set(max(blocks, 0))

    def stream_position(self, position: StreamPosition) -> None:
        """Set the stream gauges from where the stream stands (NaN while not known)."""
        self._stream_source.clear()
        self._stream_source.labels(source=position.source).set(1)
        for gauge, cursor in (
            (self._stream_cursor, position.cursor),
            (self._stream_head, position.head),
            (self._stream_finalized, position.finalized),
        ):
            gauge.set(math.nan if cursor is None else cursor.block_number)

    def job_succeeded(self, ts: float) -> None:
        """``ts``: Unix time (seconds) the job completed."""
        self._last_success.set(ts)

    def prover_available(self, prover: str, available: bool) -> None:
        self._prover_available.labels(prover=prover).set(1 if available else 0)

    def jobs_parked(self, count: int) -> None:
        self._parked.set(max(count, 0))

    def jobs_failing(self, count: int) -> None:
        self._failing.set(max(count, 0))

    def atlantic_out_of_credit(self, out: bool) -> None:
        self._atlantic_out_of_credit.set(1 if out else 0)

    def account_balance(self, fri: int) -> None:
        self._balance.set(max(fri, 0) / FRI_PER_STRK)

    def rebalances_funded(self, count: int, minimum: int) -> None:
        self._rebalances_funded.set(max(count, 0))
        self._min_rebalances.set(max(minimum, 0))

    def jobs_waiting_for_funds(self, count: int) -> None:
        self._waiting_for_funds.set(max(count, 0))

    def cost_per_allocation(self, prover: str, total_fri: int, verification_fri: int) -> None:
        self._cost_per_allocation.labels(prover=prover).set(max(total_fri, 0) / FRI_PER_STRK)
        self._verification_cost.labels(prover=prover).set(
            max(verification_fri, 0) / FRI_PER_STRK
        )

    def due_to_executed(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"due to executed must be a finite non-negative time, got {seconds!r}")
        self._due_to_executed.observe(seconds)

    def ahead_proof(self, outcome: str, discarded_cpu_s: float) -> None:
        self._ahead.labels(outcome=outcome).inc()
        if discarded_cpu_s > 0:
            self._ahead_discarded_cpu.inc(discarded_cpu_s)

    def stream_progressed(self, ts: float) -> None:
        """``ts``: Unix time (seconds) the stream advanced."""
        self._stream_progress.set(ts)

    def waiting_for_governance(self, waiting: bool) -> None:
        self._waiting_for_governance.set(1 if waiting else 0)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
