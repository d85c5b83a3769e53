"""The keeper's funds, watched and enforced: the I/O around ``keeper.engine.funds``.

- ``refresh``: read the account's STRK balance, cost the rebalances it pays for at the
  ledger's median cost per executed allocation, export both (metrics, /healthz), and say
  in one log line when the funds fall below ``funds.min_rebalances`` (and when they are
  back). The daemon calls ``maybe_refresh`` on every pass of its loop: it reads again
  after every transaction the keeper paid for (a new fee in the ledger) and at least
  every ``funds.poll_interval_s``.
- ``hold``: before a job sends a transaction, do its remaining transactions fit in the
  balance? They are estimated together, in order, on the chain's state
  (``ChainClient.estimate_sequence``: the registration transactions still to send, as
  the registrar will send them: its one ``verify_proof_full`` or the split calls left,
  then the execution); the account must hold ``required_balance`` of them. If not, nothing is
  sent: the job stays in its state (not failed, not parked) with ``failure_code``
  ``insufficient_funds`` and the reason (shown by ``jobs``), /healthz is degraded, one
  log line says so, and the daemon looks again at its next pass, so the job resumes by
  itself once the account is funded. While it waits, only the balance is read at each
  pass; the estimates are made again once the balance reaches what they required, or
  after ``funds.poll_interval_s`` (fees move). A later step of a job whose balance still
  holds all that the estimates a step before required passes without estimating again
  (within ``funds.poll_interval_s``): what is left to send needs less.

Where the execution cannot be simulated after the registration (the router would refuse
it at this state for another reason), its cost is the ledger's median execution fee
(else the default cost per allocation): the send itself then reports the real reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from keeper.chain import ChainClient, WouldRevertError
from keeper.chain.balance import balance_at, fee_token_balance
from keeper.core.config import FundsConfig
from keeper.core.errors import ChainError
from keeper.core.logs import get_logger
from keeper.engine.funds import (
    FRI_PER_STRK,
    INSUFFICIENT_FUNDS,
    RECENT_ALLOCATIONS,
    FundsStatus,
    TxFee,
    allocation_fri,
    cost_per_allocation,
    expected_charge,
    required_balance,
    strk,
    waiting_reason,
)
from keeper.ops.health import HealthState
from keeper.ops.metrics import KeeperMetrics
from keeper.store.jobs import Job, JobStore
from keeper.store.ledger import AllocationCost, Ledger, median_fee

_log = get_logger("keeper.engine.funds")


@dataclass(frozen=True)
class _Waiting:
    required_fri: int
    estimated_at: float  # monotonic
    reason: str


@dataclass(frozen=True)
class _Passed:
    required_fri: int
    estimated_at: float  # monotonic
    transactions: int  # registration calls that were still to send


class FundsGuard:
    def __init__(
        self,
        *,
        chain: ChainClient,
        jobs: JobStore,
        ledger: Ledger,
        config: FundsConfig,
        margin: float,
        metrics: KeeperMetrics | None = None,
        health: HealthState | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._chain = chain
        self._jobs = jobs
        self._ledger = ledger
        self._cfg = config
        self._token = int(config.fee_token_address, 16)
        self._margin = margin
        self._metrics = metrics
        self._health = health
        self._clock = clock
        self.status: FundsStatus | None = None
        self._read_at: float | None = None
        self._fee_mark: int | None = None
        self._low: bool | None = None
        self._waiting: dict[str, _Waiting] = {}
        self._passed: dict[str, _Passed] = {}  # the last estimates a job's balance covered

    # ------------------------------------------------------------------ the balance

    async def balance(self) -> int:
        """The account's FRI balance now (the metric follows it)."""
        value = await fee_token_balance(self._chain, token=self._token)
        if self._metrics is not None:
            self._metrics.account_balance(value)
        return value

    async def refresh(self) -> FundsStatus | None:
        """Read the balance and cost the rebalances it pays for; None when the node did
        not answer (the last status stays; the next pass tries again)."""
        self._read_at = self._clock()
        self._fee_mark = self._ledger_fee_mark()
        try:
            balance = await self.balance()
        except ChainError as exc:
            _log.warning("funds.balance_unread", error=str(exc), code=exc.code)
            return None
        allocations = self._ledger.executed_allocations(
            confirmed_since=None, atlantic_price_per_job_size={}
        )
        figure = cost_per_allocation(
            allocations, default_fri=self._cfg.default_cost_per_allocation_fri
        )
        status = FundsStatus(balance, figure, self._cfg.min_rebalances)
        self.status = status
        account = self._chain.account_address
        if self._metrics is not None:
            self._metrics.rebalances_funded(status.rebalances, self._cfg.min_rebalances)
            for prover, (total, verification) in _per_prover_medians(allocations).items():
                self._metrics.cost_per_allocation(prover, total, verification)
        if self._health is not None:
            self._health.funds_low = status.low_reason(account)
            self._health.funds = status.as_json()
        if status.low != self._low:
            fields = {
                "balance_fri": str(balance),
                "balance": strk(balance),
                "rebalances_funded": status.rebalances,
                "min_rebalances": self._cfg.min_rebalances,
                "cost_per_allocation": strk(figure.fri),
                "cost_source": figure.source,
            }
            if status.low:
                _log.warning("funds.low", reason=status.low_reason(account), **fields)
            else:
                _log.info("funds.ok" if self._low else "funds.balance", **fields)
            self._low = status.low
        return status

    async def maybe_refresh(self) -> FundsStatus | None:
        """``refresh`` when the keeper paid a fee since the last read, or it is due."""
        due = self._read_at is None or (
            self._clock() - self._read_at >= self._cfg.poll_interval_s
        )
        if due or self._ledger_fee_mark() != self._fee_mark:
            return await self.refresh()
        return self.status

    def _ledger_fee_mark(self) -> int:
        return self._ledger.last_fee_row()

    # ------------------------------------------------------------------ the gate

    async def hold(
        self, job: Job, registration: Sequence[Any], verification_hash: int
    ) -> str | None:
        """Before ``job`` sends a transaction: None when the balance pays for all its
        remaining ones (the ``registration`` calls still to send, one transaction each,
        then the execution naming ``verification_hash``); else the reason it waits
        (recorded on the job, /healthz, one log line)."""
        balance = await self.balance()
        passed = self._passed.get(job.id)
        if (
            passed is not None
            and job.id not in self._waiting
            and balance >= passed.required_fri
            and len(registration) < passed.transactions
            and self._clock() - passed.estimated_at < self._cfg.poll_interval_s
        ):
            return None  # still holds what all of them needed a step ago: so does the rest
        waiting = self._waiting.get(job.id)
        if (
            waiting is not None
            and balance < waiting.required_fri
            and self._clock() - waiting.estimated_at < self._cfg.poll_interval_s
        ):
            return waiting.reason  # still short of what the last estimates required
        fees = await self._remaining_fees(job, registration, verification_hash)
        if fees is None:
            self._resume(job, balance, None)
            return None  # not estimable: the send itself reports why
        required = required_balance(fees, self._margin)
        if balance >= required:
            self._passed[job.id] = _Passed(required, self._clock(), len(registration))
            self._resume(job, balance, required)
            return None
        reason = waiting_reason(
            epoch=job.epoch,
            account=self._chain.account_address,
            balance_fri=balance,
            required_fri=required,
            transactions=len(fees),
        )
        self._wait(job, _Waiting(required, self._clock(), reason), balance)
        return reason

    def settle(self, job: Job) -> None:
        """After a step of ``job``: it no longer waits for funds unless it still says so
        (it moved on, was superseded or failed)."""
        if not job.is_open:
            self._passed.pop(job.id, None)
        if job.id in self._waiting and (
            not job.is_open or job.failure_code != INSUFFICIENT_FUNDS
        ):
            self._waiting.pop(job.id, None)
            self._publish_waiting()

    async def _remaining_fees(
        self, job: Job, registration: Sequence[Any], verification_hash: int
    ) -> list[TxFee] | None:
        transactions: list[list[Any]] = [[call] for call in registration]
        execute = self._chain.execute_allocation_call(job.output, verification_hash)
        purpose = f"the {len(transactions) + 1} remaining transaction(s) of epoch {job.epoch}"
        try:
            quotes = await self._chain.estimate_sequence(
                [*transactions, [execute]], purpose=purpose
            )
            return [TxFee(q.estimated_fee, q.max_fee) for q in quotes]
        except WouldRevertError as exc:
            _log.info("funds.execution_not_simulated", reason=exc.reason, epoch=job.epoch)
        try:
            quotes = await self._chain.estimate_sequence(transactions, purpose=purpose)
        except WouldRevertError as exc:
            _log.info("funds.registration_not_simulated", reason=exc.reason, epoch=job.epoch)
            return None
        execution = self._execution_figure()
        return [
            *(TxFee(q.estimated_fee, q.max_fee) for q in quotes),
            TxFee(execution, expected_charge(execution, self._margin)),
        ]

    def _execution_figure(self) -> int:
        allocations = self._ledger.executed_allocations(
            confirmed_since=None, atlantic_price_per_job_size={}
        )
        fees = [a.execution_fees.get("FRI", 0) for a in allocations if a.execution_txs]
        fees = [f for f in fees if f > 0]
        if not fees:
            return self._cfg.default_cost_per_allocation_fri
        return median_fee(fees[-RECENT_ALLOCATIONS:])

    def _wait(self, job: Job, waiting: _Waiting, balance: int) -> None:
        first = job.id not in self._waiting
        self._passed.pop(job.id, None)
        self._waiting[job.id] = waiting
        current = self._jobs.require(job.id)
        if current.failure_code != INSUFFICIENT_FUNDS or current.failure_reason != waiting.reason:
            self._jobs.set_columns(
                current, failure_code=INSUFFICIENT_FUNDS, failure_reason=waiting.reason
            )
        if first:
            _log.warning(
                "job.waiting_for_funds",
                code=INSUFFICIENT_FUNDS,
                reason=waiting.reason,
                required_fri=str(waiting.required_fri),
                balance_fri=str(balance),
            )
        self._publish_waiting()

    def _resume(self, job: Job, balance: int, required: int | None) -> None:
        was = self._waiting.pop(job.id, None)
        current = self._jobs.require(job.id)
        if current.failure_code == INSUFFICIENT_FUNDS:
            self._jobs.set_columns(current, failure_code=None, failure_reason=None)
        if was is not None:
            _log.info(
                "job.funds_available",
                balance_fri=str(balance),
                required_fri=None if required is None else str(required),
            )
            self._publish_waiting()

    def _publish_waiting(self) -> None:
        reasons = [w.reason for w in self._waiting.values()]
        if self._health is not None:
            self._health.funds_waiting = reasons[0] if reasons else None
        if self._metrics is not None:
            self._metrics.jobs_waiting_for_funds(len(reasons))


async def funds_status_at(
    rpc_url: str, account: int, ledger: Ledger, config: FundsConfig, *, timeout_s: float
) -> tuple[FundsStatus | None, str | None]:
    """(the funds status, None) or (None, why the balance could not be read), for tools
    without the daemon (``status``). The URL is never echoed: it may carry a key."""
    token = int(config.fee_token_address, 16)
    try:
        async with asyncio.timeout(timeout_s):
            balance = await balance_at(rpc_url, account, token=token)
    except TimeoutError:
        return None, f"the node did not answer within {timeout_s:g} s"
    except ChainError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - any node failure is shown, not fatal
        return None, f"the balance could not be read ({type(exc).__name__})"
    allocations = ledger.executed_allocations(confirmed_since=None, atlantic_price_per_job_size={})
    figure = cost_per_allocation(allocations, default_fri=config.default_cost_per_allocation_fri)
    return FundsStatus(balance, figure, config.min_rebalances), None


def _per_prover_medians(allocations: Sequence[AllocationCost]) -> dict[str, tuple[int, int]]:
    """Per prover: the median FRI of an executed allocation, and of its verification."""
    grouped: dict[str, list[AllocationCost]] = {}
    for allocation in allocations:
        if allocation_fri(allocation) is not None:
            grouped.setdefault(allocation.prover, []).append(allocation)
    medians = {}
    for prover, group in grouped.items():
        newest = group[-RECENT_ALLOCATIONS:]
        medians[prover] = (
            median_fee([allocation_fri(a) or 0 for a in newest]),
            median_fee([a.verification_fees.get("FRI", 0) for a in newest]),
        )
    return medians


__all__ = ["FRI_PER_STRK", "FundsGuard", "funds_status_at"]
