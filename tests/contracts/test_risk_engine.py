"""RiskEngine: complete snapshots only (set_all_metrics), range validation, events, its
constructor and DevFactRegistry's, and the Cairo 1 commitment against the §2
serialization (tests/vectors/allocation_vectors.json when present, and starknet_py's
compute_hash_on_elements on generated inputs)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starknet_py.hash.selector import get_selector_from_name
from starknet_py.hash.utils import compute_hash_on_elements
from starknet_py.net.client_errors import ClientError
from starknet_py.net.client_models import Call

from keeper.devnet import deploy as devnet_deploy
from prover import model
from tests.contracts.conftest import (
    DIRECT_PIN,
    ROOT,
    AbiCodec,
    Deployed,
    deploy_fresh,
    events_named,
    expect_revert,
    short_string,
)
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
    commitment = await deployed.view("RiskEngine", "get_inputs_commitment")
    assert commitment == compute_hash_on_elements(raw)
    assert commitment == model.inputs_commitment(inputs)


async def test_a_snapshot_emits_one_event_per_protocol_with_the_final_commitment(
    deployed: Deployed,
) -> None:
    metrics = await deployed.metrics()
    metrics[2]["volatility_bps"] = 9999

    receipt = await deployed.set_metrics(metrics)

    events = events_named(receipt, "MetricsUpdated")
    commitment = await deployed.view("RiskEngine", "get_inputs_commitment")
    assert [e.keys[1] for e in events] == [0, 1, 2]
    assert [e.data for e in events] == [[*(m[f] for f in FIELDS), 3, commitment] for m in metrics]


async def test_a_partial_update_is_impossible(deployed: Deployed) -> None:
    """No per-protocol setter; a snapshot with one bad protocol writes nothing at all."""
    before = await deployed.view("RiskEngine", "get_inputs_commitment")
    call = Call(deployed.risk_engine_address, get_selector_from_name("set_metrics"), [0, 1])
    await expect_revert(deployed.send(deployed.owner, [call]), "ENTRYPOINT_NOT_FOUND")
    bad = await deployed.metrics()
    bad[0]["apy_bps"] = 999  # a valid change...
    bad[2]["audit_score"] = 101  # ...with an invalid one after it
    await expect_revert(deployed.set_metrics(bad), "audit_score > 100")
    assert await deployed.view("RiskEngine", "get_inputs_commitment") == before


async def test_a_shrinking_snapshot_replaces_the_whole_set(deployed: Deployed) -> None:
    metrics = await deployed.metrics()
    receipt = await deployed.set_metrics(metrics[:2])
    assert await deployed.view("RiskEngine", "get_protocol_count") == 2
    events = events_named(receipt, "MetricsUpdated")
    assert len(events) == 2 and all(e.data[6] == 2 for e in events)
    await expect_revert(
        deployed.view("RiskEngine", "get_metrics", 2), "index beyond protocol count"
    )


async def test_constructors_emit_their_configuration(deployed: Deployed) -> None:
    owner, oracle = deployed.owner.address, deployed.keeper.address
    address, receipt = await deployed.deploy_another("RiskEngine", [owner, oracle, 7200])
    assert events_named(receipt, "OwnershipTransferred", address)[0].data == [0, owner]
    assert events_named(receipt, "OracleUpdated", address)[0].data == [0, oracle]
    (params,) = events_named(receipt, "ModelParamsUpdated", address)
    defaults = model.ModelParams().as_list()
    empty = compute_hash_on_elements([0, *defaults])  # the commitment of no protocols
    assert params.data == [*[0] * 12, *defaults, empty]
    (delay,) = events_named(receipt, "GovernanceParamsUpdated", address)
    assert (delay.keys[1:], delay.data) == ([short_string("governance_delay_s")], [0, 7200])
    await expect_revert(
        deployed.deploy_another("RiskEngine", [0, oracle, 0]), "owner is zero"
    )
    await expect_revert(
        deployed.deploy_another("RiskEngine", [owner, oracle, 30 * 24 * 3600 + 1]),
        "delay above 30 days",
    )
    registrar = deployed.keeper.address
    address, receipt = await deployed.deploy_another("DevFactRegistry", [registrar])
    assert events_named(receipt, "RegistrarUpdated", address)[0].data == [0, registrar]


async def test_the_dev_registry_has_no_verifier_behind_it(deployed: Deployed) -> None:
    preset = {"layout": DIRECT_PIN["layout"], "hasher": DIRECT_PIN["hasher"]}
    await expect_revert(
        deployed.view("DevFactRegistry", "get_verifier_address", preset), "VERIFIER_NOT_FOUND"
    )
    assert await deployed.view("DevFactRegistry", "get_verification", 0x1234) is None


async def test_roles_are_enforced(deployed: Deployed) -> None:
    metrics = await deployed.metrics()
    await expect_revert(
        deployed.invoke(deployed.keeper, "RiskEngine", "set_all_metrics", metrics),
        "caller is not oracle",
    )
    await expect_revert(
        deployed.propose("oracle", [deployed.keeper.address], account=deployed.keeper,
                         contract="RiskEngine"),
        "caller is not owner",
    )
    await deployed.propose("oracle", [deployed.keeper.address], contract="RiskEngine")
    for function in ("apply_change", "cancel_change"):
        await expect_revert(
            deployed.invoke(deployed.keeper, "RiskEngine", function, short_string("oracle"), 0),
            "caller is not owner",
        )
    await expect_revert(
        deployed.invoke(
            deployed.outsider, "DevFactRegistry", "register_fact", 0x1234, 128, DIRECT_PIN
        ),
        "caller is not registrar",
    )


async def test_model_params_update_emits_old_and_new(deployed: Deployed) -> None:
    old = await deployed.view("RiskEngine", "get_model_params")
    new = dict(old)
    new["w_vol"] = 55

    receipt = await deployed.set_model_params(new)

    key = get_selector_from_name("ModelParamsUpdated")
    (event,) = [e for e in receipt.events if e.keys[0] == key]
    (applied,) = events_named(receipt, "GovernanceChangeApplied", deployed.risk_engine_address)
    assert applied.keys[1:] == [short_string("model_params"), 0]
    names = devnet_deploy.MODEL_PARAM_NAMES
    commitment = await deployed.view("RiskEngine", "get_inputs_commitment")
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
    metrics = await deployed.metrics()
    bad = [dict(m) for m in metrics]
    bad[1][field] = value
    with pytest.raises(ClientError) as info:
        await deployed.set_metrics(bad)
    assert reason in str(info.value)
    assert await deployed.metrics() == metrics


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
    params = await deployed.view("RiskEngine", "get_model_params")
    values = {**dict(params), **changes}
    proposal = [values[name] for name in devnet_deploy.MODEL_PARAM_NAMES]
    await expect_revert(deployed.propose("model_params", proposal, contract="RiskEngine"), reason)
    assert await deployed.pending("model_params", contract="RiskEngine") is None


async def test_protocol_set_bounds(deployed: Deployed) -> None:
    metrics = await deployed.metrics()
    await expect_revert(deployed.set_metrics([]), "no protocols")
    await expect_revert(deployed.set_metrics([metrics[0]] * 17), "more than 16 protocols")


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
        commitment = await env.view("RiskEngine", "get_inputs_commitment")
        assert commitment == expected, case.get("name", case)


async def _write_inputs(env: Deployed, inputs: model.AllocationInputs) -> None:
    await env.invoke(
        env.owner,
        "RiskEngine",
        "set_all_metrics",
        [as_dict(p.as_list(), FIELDS) for p in inputs.protocols],
    )
    # RiskEngine's timelock, at the devnet delay of 0: propose and apply in one multicall.
    await env.set_model_params(as_dict(inputs.params.as_list(), devnet_deploy.MODEL_PARAM_NAMES))


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
    commitment = await deployed.view("RiskEngine", "get_inputs_commitment")
    assert commitment == compute_hash_on_elements(inputs.commitment_elements())

