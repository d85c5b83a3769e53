"""The funds arithmetic (keeper.engine.funds): cost per allocation, rebalances funded,
and the balance a job's remaining transactions need."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.engine.funds import (
    FRI_PER_STRK,
    INSUFFICIENT_FUNDS,
    CostFigure,
    FundsStatus,
    TxFee,
    allocation_fri,
    cost_per_allocation,
    expected_charge,
    rebalances_funded,
    required_balance,
    strk,
    waiting_reason,
)
from keeper.store.ledger import AllocationCost

NOW = datetime(2026, 12, 1, tzinfo=UTC)
DEFAULT = 3 * FRI_PER_STRK // 10
_epochs = itertools.count()


def allocation(
    verification: dict[str, int] | None = None, execution: dict[str, int] | None = None
) -> AllocationCost:
    epoch = next(_epochs)
    return AllocationCost(
        job_id=f"0x1:{epoch}",
        epoch=epoch,
        prover="stone",
        trigger="interval",
        confirmed_at=NOW + timedelta(minutes=epoch),
        n_steps=1000,
        trace_cpu_s=1.0,
        proof_cpu_s=2.0,
        verification_fees=verification or {},
        verification_txs=5 if verification else 0,
        execution_fees=execution or {},
        execution_txs=1 if execution else 0,
        atlantic_job_size="S",
        atlantic_usd=None,
        atlantic_unpriced="S",
    )


fri = st.integers(min_value=0, max_value=10**24)
margins = st.sampled_from([1.0, 1.1, 1.5, 2.0, 2.5, 3.0])


def test_an_allocation_costs_its_verification_and_its_execution() -> None:
    a = allocation({"FRI": 280}, {"FRI": 5})
    assert allocation_fri(a) == 285
    assert allocation_fri(allocation(None, {"FRI": 5})) == 5  # Atlantic: execution only
    assert allocation_fri(allocation({"WEI": 1}, {"FRI": 5})) is None  # not STRK


def test_before_the_first_executed_allocation_the_default_is_the_figure() -> None:
    assert cost_per_allocation([], default_fri=DEFAULT) == CostFigure(DEFAULT, "default", 0)
    # Only allocations paid in another unit: still no STRK figure.
    only_wei = [allocation({"WEI": 9}, {"WEI": 1})]
    assert cost_per_allocation(only_wei, default_fri=DEFAULT).source == "default"
    # Free allocations (a devnet at zero gas price) make no figure either.
    free = [allocation({"FRI": 0}, {"FRI": 0})]
    assert cost_per_allocation(free, default_fri=DEFAULT).source == "default"


def test_the_median_is_over_the_newest_allocations_only() -> None:
    old = [allocation({"FRI": 10**20}, {"FRI": 0}) for _ in range(5)]
    new = [allocation({"FRI": amount}, {"FRI": 5}) for amount in (100, 300, 200)]
    figure = cost_per_allocation([*old, *new], default_fri=DEFAULT, recent=3)
    assert figure == CostFigure(205, "ledger", 3)


@given(st.lists(st.integers(min_value=1, max_value=10**21), min_size=1, max_size=40))
def test_the_figure_is_a_median_of_the_recent_costs(costs: list[int]) -> None:
    allocations = [allocation({"FRI": c}, None) for c in costs]
    figure = cost_per_allocation(allocations, default_fri=DEFAULT, recent=20)
    recent = sorted(costs[-20:])
    assert figure.source == "ledger" and figure.allocations == len(recent)
    assert recent[0] <= figure.fri <= recent[-1]
    below = sum(1 for c in recent if c < figure.fri)
    above = sum(1 for c in recent if c > figure.fri)
    assert below <= len(recent) // 2 and above <= len(recent) // 2


@pytest.mark.parametrize("bad", [0, -1])
def test_a_default_that_is_not_positive_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        cost_per_allocation([], default_fri=bad)
    with pytest.raises(ValueError, match="positive"):
        rebalances_funded(10, bad)


@given(fri, st.integers(min_value=1, max_value=10**22))
def test_rebalances_funded_is_how_many_whole_allocations_the_balance_pays(
    balance: int, per: int
) -> None:
    n = rebalances_funded(balance, per)
    assert n * per <= balance < (n + 1) * per


def test_a_negative_balance_funds_nothing() -> None:
    assert rebalances_funded(-5, 1) == 0


@given(fri, margins)
def test_the_expected_charge_is_the_estimate_times_the_margin_rounded_up(
    estimate: int, margin: float
) -> None:
    charge = expected_charge(estimate, margin)
    exact = estimate * Fraction(str(margin))  # the decimal the operator wrote
    assert exact <= charge < exact + 1


def test_a_margin_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        expected_charge(10, 0.5)


tx_fees = st.builds(
    lambda est, extra: TxFee(est, est + extra), fri, st.integers(min_value=0, max_value=10**22)
)


@given(st.lists(tx_fees, max_size=8), margins)
def test_the_required_balance_pays_every_transaction_in_order(
    fees: list[TxFee], margin: float
) -> None:
    """Spending each transaction's expected charge in turn, the balance covers the next
    one's whole bound every time, and all of them; and no smaller balance does."""
    required = required_balance(fees, margin)
    charges = [expected_charge(f.estimated_fee, margin) for f in fees]

    def pays(balance: int) -> bool:
        for fee, charge in zip(fees, charges, strict=True):
            if balance < fee.max_fee:
                return False
            balance -= charge
        return balance >= 0

    assert pays(required)
    assert required == 0 or not pays(required - 1)


def test_the_required_balance_of_nothing_is_zero() -> None:
    assert required_balance([], 1.5) == 0


def test_a_large_bound_early_dominates_the_sum() -> None:
    # The first transaction's bound (2.25x with a 1.5 multiplier on amount and price)
    # is more than all three expected charges together.
    fees = [TxFee(100, 1000), TxFee(100, 225), TxFee(100, 225)]
    assert required_balance(fees, 1.5) == 1000
    assert required_balance([TxFee(100, 225)] * 3, 1.5) == 150 + 150 + 225


@given(fri, st.integers(min_value=1, max_value=10**21), st.integers(min_value=0, max_value=50))
def test_funds_are_low_below_the_minimum_rebalances(
    balance: int, per: int, minimum: int
) -> None:
    status = FundsStatus(balance, CostFigure(per, "ledger", 3), minimum)
    assert status.low == (balance // per < minimum)
    reason = status.low_reason(0xABC)
    assert (reason is None) == (not status.low)
    if reason is not None:
        assert "0xabc" in reason and f"min_rebalances = {minimum}" in reason
        assert f"pays for {balance // per} rebalance(s)" in reason


def test_the_status_as_json_keeps_exact_amounts() -> None:
    status = FundsStatus(12 * FRI_PER_STRK + 1, CostFigure(DEFAULT, "default", 0), 10)
    body = status.as_json()
    assert body["balance_fri"] == str(12 * FRI_PER_STRK + 1)
    assert body["balance_strk"] == "12.000000"
    assert body["rebalances_funded"] == 40 and body["low"] is False


def test_the_waiting_reason_says_what_is_needed_and_what_to_do() -> None:
    text = waiting_reason(
        epoch=7, account=0xABC, balance_fri=FRI_PER_STRK // 100, required_fri=290 * 10**15 + 1,
        transactions=6,
    )
    assert text.startswith(INSUFFICIENT_FUNDS)
    assert "epoch 7" in text and "6 remaining transaction(s)" in text
    assert "0.290001 STRK" in text  # a requirement is rounded up, never down
    assert "0.010000 STRK" in text and "0xabc" in text and "top up" in text


@given(fri)
def test_strk_amounts_round_the_way_they_are_meant(amount: int) -> None:
    down = Decimal(strk(amount).split()[0])
    up = Decimal(strk(amount, up=True).split()[0])
    exact = Decimal(amount) / FRI_PER_STRK
    assert down <= exact <= up
    assert up - down <= Decimal("0.000001")
