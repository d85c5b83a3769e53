"""v3 fee bounds from an estimate: pure arithmetic, exact (no floats on FRI amounts)."""

from __future__ import annotations

from fractions import Fraction

from starknet_py.net.client_models import EstimatedFee, ResourceBounds, ResourceBoundsMapping


def resource_bounds_for(estimate: EstimatedFee, multiplier: float) -> ResourceBoundsMapping:
    """Amounts and unit prices of the estimate, each multiplied by ``multiplier`` (rounded
    up, in exact arithmetic: prices in FRI exceed a float's integer precision)."""
    factor = Fraction(multiplier).limit_denominator(10**6)

    def scaled(value: int) -> int:
        return -(-int(value) * factor.numerator // factor.denominator)

    def bound(amount: int, price: int) -> ResourceBounds:
        return ResourceBounds(max_amount=scaled(amount), max_price_per_unit=scaled(price))

    return ResourceBoundsMapping(
        l1_gas=bound(estimate.l1_gas_consumed, estimate.l1_gas_price),
        l1_data_gas=bound(estimate.l1_data_gas_consumed, estimate.l1_data_gas_price),
        l2_gas=bound(estimate.l2_gas_consumed, estimate.l2_gas_price),
    )


def max_fee_of(bounds: ResourceBoundsMapping) -> int:
    """The most a transaction with these bounds can be charged (tip 0)."""
    return sum(
        int(r.max_amount) * int(r.max_price_per_unit)
        for r in (bounds.l1_gas, bounds.l1_data_gas, bounds.l2_gas)
    )
