"""Hypothesis strategies for valid allocation inputs (shared by the prover tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from prover.model import (
    BPS,
    MAX_PROTOCOLS,
    MAX_VALUE,
    AllocationInputs,
    ModelParams,
    ProtocolInputs,
)


def _edge_int(low: int, high: int) -> st.SearchStrategy[int]:
    """Integers in [low, high] with the bounds drawn often."""
    return st.one_of(st.sampled_from([low, high]), st.integers(low, high))


protocols = st.builds(
    ProtocolInputs,
    utilization_bps=_edge_int(0, BPS),
    volatility_bps=_edge_int(0, BPS),
    liquidity_tier=st.integers(0, 3),
    audit_score=_edge_int(0, 100),
    age_days=st.one_of(_edge_int(0, 2000), _edge_int(0, MAX_VALUE)),
    apy_bps=st.one_of(st.just(0), _edge_int(0, 3000), _edge_int(0, MAX_VALUE)),
)


@st.composite
def model_params(draw: st.DrawFn) -> ModelParams:
    if draw(st.booleans()):
        return ModelParams()
    value = st.one_of(_edge_int(0, 100), _edge_int(0, MAX_VALUE))
    floor = draw(value)
    ceiling = draw(st.integers(floor, max(floor, MAX_VALUE)))
    return ModelParams(
        w_util=draw(value),
        w_vol=draw(value),
        liq_penalty_0=draw(value),
        liq_penalty_1=draw(value),
        liq_penalty_2=draw(value),
        liq_penalty_3=draw(value),
        audit_num=draw(value),
        audit_den=draw(st.one_of(_edge_int(1, 20), _edge_int(1, MAX_VALUE))),
        age_cap_days=draw(st.one_of(_edge_int(1, 1000), _edge_int(1, MAX_VALUE))),
        age_penalty=draw(value),
        risk_floor=floor,
        risk_ceiling=ceiling,
    )


@st.composite
def allocation_inputs(
    draw: st.DrawFn, max_protocols: int = MAX_PROTOCOLS, *, mostly_small: bool = False
) -> AllocationInputs:
    """Valid inputs; ``mostly_small`` draws n <= 4 two times in three (VM time grows with n)."""
    sizes = st.integers(1, max_protocols)
    if mostly_small:
        small = st.integers(1, min(4, max_protocols))
        sizes = st.one_of(small, small, sizes)
    n = draw(sizes)
    return AllocationInputs(
        router=draw(st.integers(0, 2**251 - 1)),
        epoch=draw(st.integers(0, 2**64 - 1)),
        protocols=tuple(draw(st.lists(protocols, min_size=n, max_size=n))),
        params=draw(model_params()),
        max_single_bps=draw(st.one_of(_edge_int(1, BPS), st.integers(-(-BPS // n), BPS))),
        min_diversification=draw(st.one_of(st.integers(0, min(n, 4)), _edge_int(0, 16))),
    )
