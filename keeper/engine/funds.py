"""The keeper's own funds, as arithmetic: how many rebalances the account's balance pays
for, and whether it pays for every remaining transaction of a job. Pure; the I/O (the
balance, the fee estimates, the ledger) is ``keeper.engine.funds_guard``'s, and the
arithmetic of one list of transactions (``required_balance``) is
``keeper.chain.balance``'s, shared with ``deploy --dry-run``.

- **Cost per allocation**: the median, over the newest ``RECENT_ALLOCATIONS`` executed
  allocations of the ledger, of what each one paid in FRI (its fact registration
  transactions plus its execution, reverted ones included: they were paid). Before the
  first executed allocation: ``funds.default_cost_per_allocation_fri``. The median, so
  that one registration that needed a second try does not move the figure.
- **Rebalances funded**: the balance divided by that cost, rounded down.
- **Can the job finish**: the remaining transactions of a job (its registration steps
  still to send, then the execution), each with its fee estimate and the bound it would
  be signed with. Each is expected to cost its estimate times the margin
  (``chain.fee_multiplier``, the one the keeper already signs with). The account must
  hold the sum of those, and at each transaction also that transaction's whole fee bound
  on top of what the ones before it cost: a node refuses a transaction whose bound the
  balance does not cover (``required_balance``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from keeper.chain.balance import (
    FRI_PER_STRK,
    TxFee,
    expected_charge,
    required_balance,
    strk,
    strk_decimal,
)
from keeper.store.ledger import AllocationCost, median_fee

RECENT_ALLOCATIONS = 20  # executed allocations the median cost is taken over, newest first
INSUFFICIENT_FUNDS = "insufficient_funds"  # the job's waiting code (jobs, /healthz, logs)

FigureSource = Literal["ledger", "default"]


@dataclass(frozen=True)
class CostFigure:
    """What one executed allocation costs, and where the figure comes from."""

    fri: int
    source: FigureSource
    allocations: int  # executed allocations the median is over (0 for the default)

    def describe(self) -> str:
        if self.source == "default":
            return (
                f"{strk(self.fri)} per allocation (funds.default_cost_per_allocation_fri: "
                "no allocation executed yet)"
            )
        return (
            f"{strk(self.fri)} per allocation (median of the last {self.allocations} executed)"
        )


def allocation_fri(allocation: AllocationCost) -> int | None:
    """FRI paid for one executed allocation (verification + execution); None when some
    of its fees were paid in another unit (it cannot be added to a STRK balance)."""
    units = set(allocation.verification_fees) | set(allocation.execution_fees)
    if units - {"FRI"}:
        return None
    return allocation.verification_fees.get("FRI", 0) + allocation.execution_fees.get("FRI", 0)


def cost_per_allocation(
    allocations: Sequence[AllocationCost],
    *,
    default_fri: int,
    recent: int = RECENT_ALLOCATIONS,
) -> CostFigure:
    """The median FRI cost of the newest ``recent`` executed allocations costed in FRI
    (``allocations`` oldest first, as the ledger gives them); ``default_fri`` before any."""
    if default_fri <= 0:
        raise ValueError(f"the default cost per allocation must be positive, got {default_fri}")
    if recent < 1:
        raise ValueError(f"recent must be at least 1, got {recent}")
    figures = [f for f in (allocation_fri(a) for a in allocations) if f is not None]
    newest = figures[-recent:]
    if not newest:
        return CostFigure(default_fri, "default", 0)
    median = median_fee(newest)
    if median <= 0:  # only free allocations (a devnet at zero gas price): no figure
        return CostFigure(default_fri, "default", 0)
    return CostFigure(median, "ledger", len(newest))


def rebalances_funded(balance_fri: int, per_allocation_fri: int) -> int:
    """How many allocations the balance pays for at ``per_allocation_fri`` each."""
    if per_allocation_fri <= 0:
        raise ValueError(f"the cost per allocation must be positive, got {per_allocation_fri}")
    return max(balance_fri, 0) // per_allocation_fri


@dataclass(frozen=True)
class FundsStatus:
    """The account's balance against the cost of the rebalances to come."""

    balance_fri: int
    figure: CostFigure
    min_rebalances: int

    @property
    def rebalances(self) -> int:
        return rebalances_funded(self.balance_fri, self.figure.fri)

    @property
    def low(self) -> bool:
        return self.rebalances < self.min_rebalances

    def low_reason(self, account: int) -> str | None:
        """Why /healthz is degraded (None when it is not), in words."""
        if not self.low:
            return None
        return (
            f"funds low: account {account:#x} holds {strk(self.balance_fri)}, which pays for "
            f"{self.rebalances} rebalance(s) at {self.figure.describe()}; below "
            f"funds.min_rebalances = {self.min_rebalances}: top up the account"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "balance_fri": str(self.balance_fri),
            "balance_strk": strk_decimal(self.balance_fri),
            "cost_per_allocation_fri": str(self.figure.fri),
            "cost_source": self.figure.source,
            "cost_allocations": self.figure.allocations,
            "rebalances_funded": self.rebalances,
            "min_rebalances": self.min_rebalances,
            "low": self.low,
        }


def waiting_reason(
    *, epoch: int, account: int, balance_fri: int, required_fri: int, transactions: int
) -> str:
    """The words of a job that waits for funds (jobs, /healthz, the log line)."""
    return (
        f"{INSUFFICIENT_FUNDS}: epoch {epoch} needs {strk(required_fri, up=True)} for its "
        f"{transactions} remaining transaction(s) (fee estimates x chain.fee_multiplier); "
        f"account {account:#x} holds {strk(balance_fri)}. Nothing is sent until it can "
        "finish: top up the account and the job resumes by itself"
    )


__all__ = [
    "FRI_PER_STRK",
    "INSUFFICIENT_FUNDS",
    "RECENT_ALLOCATIONS",
    "CostFigure",
    "FundsStatus",
    "TxFee",
    "allocation_fri",
    "cost_per_allocation",
    "expected_charge",
    "rebalances_funded",
    "required_balance",
    "strk",
    "strk_decimal",
    "waiting_reason",
]
