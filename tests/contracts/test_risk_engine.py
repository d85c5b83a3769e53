"""RiskEngine: range validation, events, and the Cairo 1 commitment against the §2
serialization (tests/vectors/allocation_vectors.json when present, and
starknet_py's compute_hash_on_elements on generated inputs)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starknet_py.hash.selector import get_selector_from_name
from starknet_py.hash.utils import compute_hash_on_elements
from starknet_py.net.client_errors import ClientError

from keeper.devnet import deploy as devnet_deploy
from prover import model
from tests.contracts.conftest import ROOT, AbiCodec, Deployed, deploy_fresh
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet

VECTORS = ROOT / "tests" / "vectors" / "allocation_vectors.json"
FIELDS = devnet_deploy.PROTOCOL_FIELDS


def as_dict(values: list[int], names: tuple[str, ...]) -> dict[str, int]:
    return dict(zip(names, values, strict=True))


async def test_get_inputs_serializes_to_commitment_elements(deployed: Deployed) -> None:
    inputs = await deployed.allocation_inputs()
    raw = await devnet_deploy.call_view(
        deployed.client, deployed.risk_engine_address, "get_inputs"
    )
    assert raw == inputs.commitment_elements()
    (commitment,) = await deployed.view("RiskEngine", "get_inputs_commitment")
    assert commitment == compute_hash_on_elements(raw)
    assert commitment == model.inputs_commitment(inputs)


async def test_metrics_update_emits_event_with_new_commitment(deployed: Deployed) -> None:
    (metrics,) = await deployed.view("RiskEngine", "get_metrics", 2)
    changed = dict(metrics)
    changed["volatility_bps"] = 9999

    receipt = await deployed.invoke(deployed.owner, "RiskEngine", "set_metrics", 2, changed)

    key = get_selector_from_name("MetricsUpdated")
    (event,) = [e for e in receipt.events if e.keys[0] == key]
    (commitment,) = await deployed.view("RiskEngine", "get_inputs_commitment")
    assert event.keys[1] == 2
    assert event.data == [*(changed[f] for f in FIELDS), 3, commitment]


async def test_model_params_update_emits_old_and_new(deployed: Deployed) -> None:
    (old,) = await deployed.view("RiskEngine", "get_model_params")
    new = dict(old)
    new["w_vol"] = 55

    receipt = await deployed.invoke(deployed.owner, "RiskEngine", "set_model_params", new)

    key = get_selector_from_name("ModelParamsUpdated")
    (event,) = [e for e in receipt.events if e.keys[0] == key]
    names = devnet_deploy.MODEL_PARAM_NAMES
    (commitment,) = await deployed.view("RiskEngine", "get_inputs_commitment")
    assert event.data == [*(old[n] for n in names), *(new[n] for n in names), commitment]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("utilization_bps", 10001, "utilization_bps > 10000"),
        ("volatility_bps", 10001, "volatility_bps > 10000"),
        ("liquidity_tier", 4, "liquidity_tier > 3"),
        ("audit_score", 101, "audit_score > 100"),
        ("age_days", 100001, "age_days > 100000"),
        ("apy_bps", 100001, "apy_bps > 100000"),
    ],
)
async def test_metrics_out_of_range_are_rejected(
    deployed: Deployed, field: str, value: int, reason: str
) -> None:
    (metrics,) = await deployed.view("RiskEngine", "get_metrics", 0)
    bad = dict(metrics)
    bad[field] = value
    with pytest.raises(ClientError) as info:
        await deployed.invoke(deployed.owner, "RiskEngine", "set_metrics", 0, bad)
    assert reason in str(info.value)
    (unchanged,) = await deployed.view("RiskEngine", "get_metrics", 0)
    assert dict(unchanged) == dict(metrics)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"w_util": 100001}, "model param > 100000"),
        ({"audit_den": 0}, "audit_den must be >= 1"),
        ({"age_cap_days": 0}, "age_cap_days must be >= 1"),
        ({"risk_floor": 50, "risk_ceiling": 40}, "risk_ceiling < risk_floor"),
    ],
)
async def test_model_params_out_of_range_are_rejected(
    deployed: Deployed, changes: dict[str, int], reason: str
) -> None:
    (params,) = await deployed.view("RiskEngine", "get_model_params")
    with pytest.raises(ClientError) as info:
        await deployed.invoke(
            deployed.owner, "RiskEngine", "set_model_params", {**dict(params), **changes}
        )
    assert reason in str(info.value)


async def test_protocol_set_bounds(deployed: Deployed) -> None:
    (metrics,) = await deployed.view("RiskEngine", "get_metrics", 0)
    with pytest.raises(ClientError) as info:
        await deployed.invoke(deployed.owner, "RiskEngine", "set_all_metrics", [])
    assert "no protocols" in str(info.value)
    with pytest.raises(ClientError) as info:
        await deployed.invoke(
            deployed.owner, "RiskEngine", "set_all_metrics", [dict(metrics)] * 17
        )
    assert "more than 16 protocols" in str(info.value)
    with pytest.raises(ClientError) as info:
        await deployed.invoke(deployed.owner, "RiskEngine", "set_metrics", 4, dict(metrics))
    assert "index beyond protocol count" in str(info.value)


def _vector_cases() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        return []
    data = json.loads(VECTORS.read_text())
    cases = data["vectors"] if isinstance(data, dict) else data
    return [c for c in cases if "commitment" in c or "expected" in c]


@pytest.mark.skipif(not VECTORS.exists(), reason="tests/vectors/allocation_vectors.json absent")
async def test_commitment_matches_shared_vectors(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    codecs: dict[str, AbiCodec],
) -> None:
    env = await deploy_fresh(devnet, contract_artifacts, codecs)
    cases = _vector_cases()
    assert cases, f"{VECTORS} holds no commitment vectors"
    for case in cases:
        inputs = model.parse_inputs(case["inputs"])
        expected = case.get("commitment", case.get("expected", {}).get("commitment"))
        if isinstance(expected, str):
            expected = int(expected, 16)
        await _write_inputs(env, inputs)
        (commitment,) = await env.view("RiskEngine", "get_inputs_commitment")
        assert commitment == expected, case.get("name", case)


async def _write_inputs(env: Deployed, inputs: model.AllocationInputs) -> None:
    await env.invoke(
        env.owner,
        "RiskEngine",
        "set_all_metrics",
        [as_dict(p.as_list(), FIELDS) for p in inputs.protocols],
    )
    await env.invoke(
        env.owner,
        "RiskEngine",
        "set_model_params",
        as_dict(inputs.params.as_list(), devnet_deploy.MODEL_PARAM_NAMES),
    )


_protocol = st.builds(
    model.ProtocolInputs,
    utilization_bps=st.integers(0, 10000),
    volatility_bps=st.integers(0, 10000),
    liquidity_tier=st.integers(0, 3),
    audit_score=st.integers(0, 100),
    age_days=st.integers(0, 100000),
    apy_bps=st.integers(0, 100000),
)
_params = st.builds(
    model.ModelParams,
    w_util=st.integers(0, 100000),
    audit_den=st.integers(1, 100000),
    age_cap_days=st.integers(1, 100000),
    risk_floor=st.integers(0, 50),
    risk_ceiling=st.integers(50, 100000),
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(protocols=st.lists(_protocol, min_size=1, max_size=16), params=_params)
async def test_commitment_equals_compute_hash_on_elements(
    deployed: Deployed, protocols: list[model.ProtocolInputs], params: model.ModelParams
) -> None:
    inputs = model.AllocationInputs(router=1, epoch=0, protocols=tuple(protocols), params=params)
    await _write_inputs(deployed, inputs)
    (commitment,) = await deployed.view("RiskEngine", "get_inputs_commitment")
    assert commitment == compute_hash_on_elements(inputs.commitment_elements())

