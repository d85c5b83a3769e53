"""Fee bounds: the multiplier applies to amounts and unit prices; the bound is their
product summed over the three resources."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st
from starknet_py.net.client_models import EstimatedFee, PriceUnit

from keeper.chain import max_fee_of, resource_bounds_for

_GAS = st.integers(0, 10**9)
_PRICE = st.integers(0, 10**15)


def estimate(values: list[int]) -> EstimatedFee:
    l1, l1p, l2, l2p, data, datap = values
    return EstimatedFee(
        l1_gas_consumed=l1,
        l1_gas_price=l1p,
        l2_gas_consumed=l2,
        l2_gas_price=l2p,
        l1_data_gas_consumed=data,
        l1_data_gas_price=datap,
        overall_fee=l1 * l1p + l2 * l2p + data * datap,
        unit=PriceUnit.FRI,
    )


def test_bound_of_a_known_estimate() -> None:
    bounds = resource_bounds_for(estimate([0, 10, 1000, 4, 128, 2]), 1.5)
    assert (bounds.l2_gas.max_amount, bounds.l2_gas.max_price_per_unit) == (1500, 6)
    assert (bounds.l1_data_gas.max_amount, bounds.l1_data_gas.max_price_per_unit) == (192, 3)
    assert max_fee_of(bounds) == 0 * 15 + 1500 * 6 + 192 * 3


@given(
    values=st.tuples(_GAS, _PRICE, _GAS, _PRICE, _GAS, _PRICE).map(list),
    multiplier=st.floats(1.0, 3.0),
)
def test_bound_covers_the_estimate_and_stays_within_multiplier_squared(
    values: list[int], multiplier: float
) -> None:
    fee = estimate(values)
    bound = max_fee_of(resource_bounds_for(fee, multiplier))
    m = Fraction(multiplier).limit_denominator(10**6)
    pairs = zip(values[0::2], values[1::2], strict=True)
    ceiling = sum((amount * m + 1) * (price * m + 1) for amount, price in pairs)
    assert fee.overall_fee * m <= bound <= ceiling
