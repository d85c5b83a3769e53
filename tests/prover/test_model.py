"""The Python reference model of docs/allocation-program.md."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from allocation_strategies import allocation_inputs
from hypothesis import HealthCheck, given, settings
from starkware.crypto.signature.fast_pedersen_hash import pedersen_hash

from prover.errors import InfeasibleAllocation, InputError
from prover.model import (
    AllocationInputs,
    ModelParams,
    ProtocolInputs,
    compute_allocation,
    expected_output,
    inputs_commitment,
    load_inputs,
    parse_inputs,
    risk_score,
)

ROOT = Path(__file__).resolve().parents[2]
DEVNET = ROOT / "config" / "devnet_inputs.json"
VECTORS = ROOT / "tests" / "vectors" / "allocation_vectors.json"


def _safe(apy: int) -> ProtocolInputs:
    """A protocol whose raw risk is 0 (clamped to the floor, 5 by default)."""
    return ProtocolInputs(0, 0, 0, 100, 1000, apy)


def _inputs(*protocols: ProtocolInputs, **kw: Any) -> AllocationInputs:
    return AllocationInputs(router=0x1, epoch=1, protocols=protocols, **kw)


def _devnet_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEVNET.read_text())
    return data


# --- parsing -----------------------------------------------------------------------


def test_devnet_inputs_parse_with_three_protocols() -> None:
    inputs = load_inputs(DEVNET)
    assert len(inputs.protocols) == 3
    assert inputs.params == ModelParams()
    assert parse_inputs(inputs.to_json()) == inputs


def test_params_default_when_omitted() -> None:
    data = _devnet_json()
    del data["params"]
    assert parse_inputs(data).params == ModelParams()
    data["params"] = {"w_util": 7}
    assert parse_inputs(data).params == dataclasses.replace(ModelParams(), w_util=7)


def test_params_as_list_is_in_spec_order() -> None:
    assert ModelParams().as_list() == [25, 40, 0, 5, 15, 30, 3, 10, 730, 10, 5, 95]


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _delete(data: dict[str, Any], path: tuple[Any, ...]) -> None:
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("protocols", 1, "utilization_bps"),
            10001,
            "protocols[1].utilization_bps = 10001 is out of range 0..10000",
        ),
        (
            ("protocols", 0, "volatility_bps"),
            -1,
            "protocols[0].volatility_bps = -1 is out of range 0..10000",
        ),
        (
            ("protocols", 2, "liquidity_tier"),
            4,
            "protocols[2].liquidity_tier = 4 is out of range 0..3",
        ),
        (("protocols", 0, "audit_score"), 101, "audit_score = 101 is out of range 0..100"),
        (("protocols", 0, "age_days"), 100001, "age_days = 100001 is out of range 0..100000"),
        (("protocols", 0, "apy_bps"), 1.5, "protocols[0].apy_bps must be an integer in 0..100000"),
        (("protocols", 0, "apy_bps"), True, "protocols[0].apy_bps must be an integer"),
        (("params", "audit_den"), 0, "params.audit_den = 0 is out of range 1..100000"),
        (("params", "age_cap_days"), 0, "params.age_cap_days = 0 is out of range 1..100000"),
        (("params", "w_vol"), 100001, "params.w_vol = 100001 is out of range 0..100000"),
        (("params", "risk_ceiling"), 4, "params.risk_ceiling = 4 must be >= params.risk_floor = 5"),
        (("max_single_bps",), 0, "max_single_bps = 0 is out of range 1..10000"),
        (("max_single_bps",), 10001, "max_single_bps = 10001 is out of range 1..10000"),
        (("min_diversification",), 17, "min_diversification = 17 is out of range 0..16"),
        (("epoch",), -1, "epoch = -1 is out of range"),
        (("epoch",), "1", "epoch must be an integer"),
        (("router",), "12ab", "router must be a hex felt"),
        (("router",), "0xzz", "router must be a hex felt"),
        (("router",), hex(2**251), "out of range"),
        (("protocols",), {}, "protocols must be a list"),
        (("protocols", 0), [1, 2], "protocols[0] must be a JSON object"),
        (("params",), [], "params must be a JSON object"),
    ],
)
def test_bad_field_names_path_and_range(path: tuple[Any, ...], value: Any, message: str) -> None:
    data = _devnet_json()
    _set(data, path, value)
    with pytest.raises(InputError, match=None) as info:
        parse_inputs(data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("router",), "missing field router"),
        (("epoch",), "missing field epoch"),
        (("protocols",), "missing field protocols"),
        (
            ("protocols", 1, "apy_bps"),
            "missing field protocols[1].apy_bps (an integer in 0..100000)",
        ),
        (("max_single_bps",), "missing field max_single_bps (an integer in 1..10000)"),
        (("min_diversification",), "missing field min_diversification"),
    ],
)
def test_missing_field_is_named(path: tuple[Any, ...], message: str) -> None:
    data = _devnet_json()
    _delete(data, path)
    with pytest.raises(InputError) as info:
        parse_inputs(data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("path", "where"),
    [((), "inputs"), (("protocols", 0), "protocols[0]"), (("params",), "params")],
)
def test_unknown_keys_are_rejected(path: tuple[Any, ...], where: str) -> None:
    data = _devnet_json()
    target: Any = data
    for key in path:
        target = target[key]
    target["surprise"] = 1
    with pytest.raises(InputError) as info:
        parse_inputs(data)
    assert f"unknown field(s) surprise in {where}" in str(info.value)


@pytest.mark.parametrize("count", [0, 17])
def test_protocol_count_outside_1_to_16(count: int) -> None:
    data = _devnet_json()
    data["protocols"] = [data["protocols"][0]] * count
    with pytest.raises(InputError) as info:
        parse_inputs(data)
    assert f"protocols has {count} entries; allowed 1..16" in str(info.value)


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(InputError, match="top level must be a JSON object"):
        parse_inputs([1, 2])


def test_load_inputs_unreadable_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read inputs file"):
        load_inputs(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="is not valid JSON"):
        load_inputs(bad)


# --- commitment ----------------------------------------------------------------------


def test_commitment_is_the_pedersen_chain_of_the_spec() -> None:
    inputs = load_inputs(DEVNET)
    elements = inputs.commitment_elements()
    assert len(elements) == 1 + 6 * 3 + 12
    assert elements[0] == 3
    assert elements[1:7] == inputs.protocols[0].as_list()
    assert elements[-12:] == inputs.params.as_list()
    h = 0
    for e in elements:
        h = pedersen_hash(h, e)
    assert inputs_commitment(inputs) == pedersen_hash(h, len(elements))


def test_commitment_changes_with_any_element() -> None:
    inputs = load_inputs(DEVNET)
    changed = dataclasses.replace(inputs, params=dataclasses.replace(inputs.params, w_vol=41))
    assert inputs_commitment(changed) != inputs_commitment(inputs)


# --- risk ----------------------------------------------------------------------------


def test_risk_terms_are_floored_separately() -> None:
    # util 5000*25/10000 = 12 (12.5), vol 2500*40/10000 = 10, liq 1 -> 5,
    # (100-91)*3/10 = 2 (2.7), age (730-365)*10/730 = 5: 34. Summing before flooring: 35.
    p = ProtocolInputs(5000, 2500, 1, 91, 365, 0)
    assert risk_score(p, ModelParams()) == 34


def test_risk_clamps_at_floor_and_ceiling() -> None:
    assert risk_score(_safe(0), ModelParams()) == 5
    worst = ProtocolInputs(10000, 10000, 3, 0, 0, 0)  # 25 + 40 + 30 + 30 + 10 = 135
    assert risk_score(worst, ModelParams()) == 95
    assert risk_score(worst, dataclasses.replace(ModelParams(), risk_ceiling=200)) == 135


def test_no_age_term_from_age_cap_on() -> None:
    params = ModelParams()
    young = ProtocolInputs(0, 0, 0, 0, 729, 0)
    old = ProtocolInputs(0, 0, 0, 0, 730, 0)
    assert risk_score(young, params) == 30 + 0  # (730-729)*10/730 = 0
    assert risk_score(old, params) == 30
    assert risk_score(ProtocolInputs(0, 0, 0, 0, 0, 0), params) == 40


# --- allocation ----------------------------------------------------------------------


def test_single_protocol_gets_everything() -> None:
    result = compute_allocation(_inputs(_safe(300)))
    assert result.allocation == (10000,)
    assert result.risk == (5,)


def test_zero_apy_everywhere_splits_equally_remainder_to_first() -> None:
    result = compute_allocation(_inputs(_safe(0), _safe(0), _safe(0)))
    assert result.allocation == (3334, 3333, 3333)


def test_remainder_goes_to_largest_score_lowest_index_on_ties() -> None:
    # scores 1,000,000 / 666,666 / 1,000,000: floors 3750, 2499, 3750; remainder 1 to 0.
    result = compute_allocation(_inputs(_safe(600), _safe(400), _safe(600)))
    assert result.allocation == (3751, 2499, 3750)
    result = compute_allocation(_inputs(_safe(100), _safe(700), _safe(700)))
    # 1/15 -> 666 (666.6), 7/15 -> 4666 each: remainder 2 to index 1.
    assert result.allocation == (666, 4668, 4666)


def test_sixteen_protocols() -> None:
    protocols = [_safe(100 + 50 * i) for i in range(16)]
    result = compute_allocation(_inputs(*protocols, max_single_bps=1000, min_diversification=2))
    assert len(result.allocation) == 16
    assert sum(result.allocation) == 10000
    assert max(result.allocation) <= 1000


def test_cap_that_cascades_over_two_rounds() -> None:
    # Round 1 caps protocol 0 (7002 -> 3000) and pushes protocol 1 to 3503; round 2 caps it.
    inputs = _inputs(_safe(7000), _safe(1500), _safe(1000), _safe(500), max_single_bps=3000)
    assert compute_allocation(inputs).allocation == (3000, 3000, 2668, 1332)


def test_exactly_feasible_cap_fills_every_protocol() -> None:
    inputs = _inputs(_safe(900), _safe(100), _safe(100), _safe(100), max_single_bps=2500)
    assert compute_allocation(inputs).allocation == (2500, 2500, 2500, 2500)


def test_cap_when_receivers_have_zero_score_spreads_equally() -> None:
    inputs = _inputs(_safe(500), _safe(0), _safe(0), max_single_bps=4000)
    # 10000 to protocol 0, cap at 4000, 6000 split 3000/3000 between zero-score receivers.
    assert compute_allocation(inputs).allocation == (4000, 3000, 3000)


def test_infeasible_max_single() -> None:
    inputs = _inputs(_safe(500), _safe(400), _safe(100), max_single_bps=3333)
    with pytest.raises(InfeasibleAllocation) as info:
        compute_allocation(inputs)
    assert "max_single_bps = 3333 with 3 protocols" in str(info.value)
    assert "needs max_single_bps >= 3334" in str(info.value)


def test_infeasible_diversification() -> None:
    inputs = _inputs(_safe(5000), _safe(10), _safe(10), min_diversification=2)
    with pytest.raises(InfeasibleAllocation) as info:
        compute_allocation(inputs)
    assert "min_diversification = 2 but only 1 protocol(s)" in str(info.value)


def test_expected_output_layout() -> None:
    inputs = load_inputs(DEVNET)
    result = compute_allocation(inputs)
    out = expected_output(inputs)
    assert len(out) == 6 + 2 * 3
    assert out[:6] == [
        inputs.router,
        inputs.epoch,
        inputs_commitment(inputs),
        inputs.max_single_bps,
        inputs.min_diversification,
        3,
    ]
    assert tuple(out[6:9]) == result.allocation
    assert tuple(out[9:12]) == result.risk


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(allocation_inputs())
def test_postconditions_hold_or_a_constraint_is_named(inputs: AllocationInputs) -> None:
    n = len(inputs.protocols)
    try:
        result = compute_allocation(inputs)
    except InfeasibleAllocation as exc:
        message = str(exc)
        if "max_single_bps" in message:
            assert n * inputs.max_single_bps < 10000
        else:
            assert "min_diversification" in message
        return
    assert sum(result.allocation) == 10000
    assert all(0 <= a <= inputs.max_single_bps for a in result.allocation)
    assert sum(a >= 1000 for a in result.allocation) >= inputs.min_diversification
    params = inputs.params
    assert all(params.risk_floor <= r <= params.risk_ceiling for r in result.risk)
    assert parse_inputs(json.loads(json.dumps(inputs.to_json()))) == inputs


@settings(max_examples=200, deadline=None)
@given(allocation_inputs(max_protocols=6))
def test_uncapped_allocation_is_monotone_in_score(inputs: AllocationInputs) -> None:
    uncapped = dataclasses.replace(inputs, max_single_bps=10000, min_diversification=0)
    result = compute_allocation(uncapped)
    scores = [
        p.apy_bps * 10000 // (r + 1) for p, r in zip(uncapped.protocols, result.risk, strict=True)
    ]
    for i in range(len(scores)):
        for j in range(len(scores)):
            if scores[i] > scores[j]:
                assert result.allocation[i] >= result.allocation[j]


# --- shared vectors ------------------------------------------------------------------


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "gen_vectors", ROOT / "scripts" / "gen_vectors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vectors_file_is_up_to_date() -> None:
    assert VECTORS.read_text() == _generator().render(), "run scripts/gen_vectors.py"


def test_vectors_match_the_model() -> None:
    vectors = json.loads(VECTORS.read_text())["vectors"]
    assert {v["name"] for v in vectors} >= {"devnet", "single_protocol", "sixteen_protocols"}
    for vector in vectors:
        inputs = parse_inputs(copy.deepcopy(vector["inputs"]))
        elements = inputs.commitment_elements()
        assert [hex(e) for e in elements] == vector["elements"]
        assert len(elements) == 1 + 6 * len(inputs.protocols) + 12
        assert hex(inputs_commitment(inputs)) == vector["commitment"]
        assert [hex(v) for v in expected_output(inputs)] == vector["output"]
