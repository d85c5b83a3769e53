"""The fee token balance's decoding and whether a balance pays for a run (pure parts of
keeper.chain.balance; the balance read itself runs against devnet in tests/e2e)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.balance import FRI_PER_STRK, TxFee, affordability, required_balance, u256
from keeper.core.errors import ChainError

limb = st.integers(min_value=0, max_value=2**128 - 1)


@given(limb, limb)
def test_a_u256_is_its_low_and_high_limbs(low: int, high: int) -> None:
    assert u256([low, high]) == low + high * 2**128


@pytest.mark.parametrize("raw", [[], [1], [1, 2, 3], [2**128, 0], [0, -1]])
def test_an_answer_that_is_not_a_u256_is_refused(raw: list[int]) -> None:
    with pytest.raises(ChainError, match="not a u256"):
        u256(raw)


def test_a_run_the_balance_pays_for() -> None:
    fees = [TxFee(FRI_PER_STRK, 2 * FRI_PER_STRK), None, TxFee(FRI_PER_STRK, 2 * FRI_PER_STRK)]
    verdict = affordability(4 * FRI_PER_STRK, fees, 1.5)
    assert verdict.required_fri == required_balance([f for f in fees if f], 1.5)
    # 1.5 expected for the first, then the second's whole bound (2) must still be there.
    assert verdict.required_fri == 35 * FRI_PER_STRK // 10
    assert verdict.can_pay and (verdict.estimated, verdict.unestimated) == (2, 1)
    text = verdict.describe(0xABC)
    assert "0xabc holds 4.000000 STRK" in text and "can pay for them" in text
    assert "1 more could not be estimated" in text


def test_a_run_the_balance_does_not_pay_for_says_by_how_much() -> None:
    verdict = affordability(FRI_PER_STRK, [TxFee(FRI_PER_STRK, 2 * FRI_PER_STRK)], 1.5)
    assert not verdict.can_pay
    text = verdict.describe(0x1)
    assert "CANNOT pay" in text and "1.000000 STRK short" in text
    assert "could not be estimated" not in text


@given(st.integers(min_value=0, max_value=10**22), st.lists(st.integers(0, 10**20), max_size=6))
def test_can_pay_is_the_balance_against_the_requirement(balance: int, estimates: list[int]) -> None:
    fees = [TxFee(e, 2 * e) for e in estimates]
    verdict = affordability(balance, fees, 1.5)
    assert verdict.can_pay == (balance >= required_balance(fees, 1.5))
