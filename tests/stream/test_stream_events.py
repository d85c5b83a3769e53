"""Pure event decoding: every kind round-trips, every malformed payload has a reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.stream.errors import DecodeError
from keeper.stream.events import (
    EVENT_NAMES,
    FIELD_PRIME,
    SELECTORS,
    AllocationExecuted,
    ContractKind,
    Event,
    GovernanceParamsUpdated,
    KeeperUpdated,
    MetricsUpdated,
    ModelParamsUpdated,
    OracleUpdated,
    OwnershipTransferred,
    RebalanceRequested,
    decode_event,
    parse_felts,
)
from prover.model import ModelParams, ProtocolInputs
from tests.stream.payloads import encode, meta

ROOT = Path(__file__).resolve().parents[2]

felts = st.integers(min_value=0, max_value=FIELD_PRIME - 1)
u32 = st.integers(min_value=0, max_value=2**32 - 1)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
short_strings = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=31
)
metas = st.builds(
    meta,
    block=st.integers(min_value=0, max_value=10**9),
    tx=st.integers(min_value=0, max_value=999),
    index=st.integers(min_value=0, max_value=10**4),
)
model_params = st.builds(ModelParams, *(u32 for _ in range(12)))

router_events = st.one_of(
    st.builds(RebalanceRequested, metas, u64, felts),
    st.builds(
        AllocationExecuted,
        metas,
        u64,
        felts,
        st.lists(u32, max_size=16).map(tuple),
        st.sampled_from(["direct", "bootloaded"]),
    ),
    st.builds(GovernanceParamsUpdated, metas, short_strings, felts, felts),
    st.builds(KeeperUpdated, metas, felts, st.booleans()),
    st.builds(OwnershipTransferred, metas, st.just("router"), felts, felts),
)
risk_events = st.one_of(
    st.builds(
        MetricsUpdated, metas, u32, st.builds(ProtocolInputs, *(u32 for _ in range(6))), u32, felts
    ),
    st.builds(ModelParamsUpdated, metas, model_params, model_params, felts),
    st.builds(OracleUpdated, metas, felts, felts),
    st.builds(OwnershipTransferred, metas, st.just("risk_engine"), felts, felts),
)


def kind_of(event: Event) -> ContractKind:
    if isinstance(event, OwnershipTransferred):
        return event.contract
    return "router" if type(event).__name__ in EVENT_NAMES["router"] else "risk_engine"


@given(st.one_of(router_events, risk_events))
def test_every_event_round_trips(event: Event) -> None:
    keys, data = encode(event)
    assert decode_event(kind_of(event), keys, data, event.meta) == event


@given(st.one_of(router_events, risk_events), st.data())
def test_truncated_or_extended_payloads_are_rejected(event: Event, draw: st.DataObject) -> None:
    keys, data = encode(event)
    kind = kind_of(event)
    if draw.draw(st.booleans(), "extend"):
        data = [*data, 7]
        expected = "unexpected trailing"
    elif data:
        data = data[: draw.draw(st.integers(0, len(data) - 1), "cut")]
        expected = "too short"
    else:
        keys = [*keys, 1]
        expected = "unexpected trailing"
    with pytest.raises(DecodeError, match=expected):
        decode_event(kind, keys, data, event.meta)


@pytest.mark.parametrize(
    ("kind", "keys", "data", "reason"),
    [
        ("router", [], [], "unknown router event selector none"),
        ("router", [SELECTORS["MetricsUpdated"], 0], [0] * 8, "unknown router event selector"),
        ("risk_engine", [SELECTORS["RebalanceRequested"], 1], [2], "unknown risk_engine event"),
        ("router", [SELECTORS["RebalanceRequested"], 2**64], [2], "epoch=.* does not fit in 64"),
        ("router", [SELECTORS["KeeperUpdated"], 5], [2], "enabled=0x2 is not a bool"),
        ("router", [SELECTORS["GovernanceParamsUpdated"], 0x0A], [1, 2], "not a printable"),
        ("router", [SELECTORS["AllocationExecuted"], 1], [9, 5000, 1], "allocation length 5000"),
        ("router", [SELECTORS["AllocationExecuted"], 1], [9, 2, 1], "too short"),
        ("router", [SELECTORS["RebalanceRequested"], 1], [FIELD_PRIME], "not a field element"),
        ("risk_engine", [SELECTORS["MetricsUpdated"], 0], [2**32] + [0] * 7, r"metrics\[0\]"),
    ],
)
def test_malformed_payload_reason(
    kind: ContractKind, keys: list[int], data: list[int], reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_event(kind, keys, data, meta(1, 0, 0))


def test_parse_felts_rejects_non_hex() -> None:
    assert parse_felts(["0x0", "0x1F"], "keys") == (0, 31)
    with pytest.raises(DecodeError, match=r"keys\[1\]='12' is not a 0x-prefixed hex felt"):
        parse_felts(["0x1", "12"], "keys")
    with pytest.raises(DecodeError, match=r"data\[0\]='0xzz' is not valid hex"):
        parse_felts(["0xzz"], "data")


# -- cross-check with the ABI the contracts build writes (keeper/abi/<Contract>.json) --------
_ABI_FILES: dict[ContractKind, str] = {"router": "StrategyRouterV2", "risk_engine": "RiskEngine"}
# Felts each ABI member type takes in our layout (Span: length + items, checked separately).
_FELT_WIDTH = {
    "core::integer::u32": 1,
    "core::integer::u64": 1,
    "core::felt252": 1,
    "core::bool": 1,
    "core::starknet::contract_address::ContractAddress": 1,
}


@pytest.fixture(scope="module")
def abis(contract_artifacts: object) -> dict[ContractKind, list[dict[str, Any]]]:
    # contract_artifacts runs the build, which rewrites keeper/abi/ when sources changed.
    return {
        kind: json.loads((ROOT / "keeper" / "abi" / f"{name}.json").read_text())
        for kind, name in _ABI_FILES.items()
    }


def _struct_width(abi: list[dict[str, Any]], type_name: str) -> int:
    if type_name in _FELT_WIDTH:
        return _FELT_WIDTH[type_name]
    for item in abi:
        if item.get("type") == "struct" and item["name"] == type_name:
            return sum(_struct_width(abi, m["type"]) for m in item["members"])
    raise AssertionError(f"unknown ABI type {type_name}")


def _abi_events(abi: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {
        item["name"].rsplit("::", 1)[-1]: item["members"]
        for item in abi
        if item.get("type") == "event" and item.get("kind") == "struct"
    }


@pytest.mark.devnet
@pytest.mark.parametrize("kind", ["router", "risk_engine"])
def test_decoders_match_the_abi_layout(
    kind: ContractKind, abis: dict[ContractKind, list[dict[str, Any]]]
) -> None:
    """Every followed event exists in the ABI, and a payload of the ABI's exact width
    (keys and data, Spans as length+items) decodes: the hand-written layout is the ABI's."""
    abi = abis[kind]
    events = _abi_events(abi)
    assert set(EVENT_NAMES[kind]) <= set(events)
    for name in EVENT_NAMES[kind]:
        keys = [SELECTORS[name]]
        data: list[int] = []
        for member in events[name]:
            target = keys if member["kind"] == "key" else data
            if member["type"].startswith("core::array::Span::"):
                target += [2, 10, 20]
            elif member["type"] == "core::felt252" and member["name"] in ("param", "prover_kind"):
                target.append(int.from_bytes(b"direct", "big"))
            else:
                target += [1] * _struct_width(abi, member["type"])
        decoded = decode_event(kind, keys, data, meta(1, 0, 0))
        assert type(decoded).__name__ == name
