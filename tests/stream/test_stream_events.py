"""Pure event decoding: every kind round-trips, every malformed payload has a reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain import FIELD_PRIME
from keeper.core.errors import ChainError
from keeper.stream.errors import DecodeError
from keeper.stream.events import (
    EVENT_NAMES,
    SELECTORS,
    AllocationExecuted,
    ContractKind,
    Event,
    GovernanceChangeApplied,
    GovernanceChangeCancelled,
    GovernanceChangeProposed,
    GovernanceParamsUpdated,
    KeeperUpdated,
    MetricsUpdated,
    ModelParamsUpdated,
    OracleUpdated,
    OwnershipTransferred,
    OwnershipTransferStarted,
    RebalanceRequested,
    check_event_abis,
    decode_event,
    parse_felts,
)
from prover.model import ModelParams, ProtocolInputs
from tests.chain.abi_files import SHIPPED, abi_dir, clear_caches, entry, load, save
from tests.stream.payloads import encode, meta, short_string

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

proposal_params = st.sampled_from(
    ["max_single_bps", "direct_verifier", "keeper", "governance_delay_s"]
)
changes = [
    st.builds(
        cls, metas, proposal_params, felts, st.lists(felts, max_size=4).map(tuple), u64
    )
    for cls in (GovernanceChangeProposed, GovernanceChangeCancelled, GovernanceChangeApplied)
]
router_events = st.one_of(
    st.builds(RebalanceRequested, metas, u64, felts, st.booleans()),
    *changes,
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
    st.builds(OwnershipTransferStarted, metas, st.just("router"), felts, felts),
)
risk_events = st.one_of(
    st.builds(
        MetricsUpdated, metas, u32, st.builds(ProtocolInputs, *(u32 for _ in range(6))), u32, felts
    ),
    st.builds(ModelParamsUpdated, metas, model_params, model_params, felts),
    st.builds(OracleUpdated, metas, felts, felts),
    st.builds(OwnershipTransferred, metas, st.just("risk_engine"), felts, felts),
    st.builds(OwnershipTransferStarted, metas, st.just("risk_engine"), felts, felts),
    # RiskEngine's own timelock: the router's events, tagged with the contract.
    *(
        st.builds(
            cls,
            metas,
            st.sampled_from(["model_params", "oracle", "governance_delay_s"]),
            st.just(0),
            st.lists(felts, max_size=12).map(tuple),
            u64,
            st.just("risk_engine"),
        )
        for cls in (GovernanceChangeProposed, GovernanceChangeCancelled, GovernanceChangeApplied)
    ),
    st.builds(
        GovernanceParamsUpdated, metas, st.just("governance_delay_s"), felts, felts,
        st.just("risk_engine"),
    ),
)


@pytest.fixture(autouse=True, scope="module")
def _abis_parsed() -> None:
    # Parsing the ABIs takes starknet_py seconds: once, not inside a timed example.
    check_event_abis()


def kind_of(event: Event) -> ContractKind:
    if hasattr(event, "contract"):  # events both contracts emit
        kind: ContractKind = event.contract
        return kind
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
        ("router", [SELECTORS["RebalanceRequested"], 2**64], [2, 0], "epoch=.* does not fit in 64"),
        ("router", [SELECTORS["RebalanceRequested"], 1], [2], "too short, by_owner missing"),
        ("router", [SELECTORS["RebalanceRequested"], 1], [2, 2], "by_owner=0x2 is not a bool"),
        (
            "router",
            [SELECTORS["GovernanceChangeProposed"], short_string("max_single_bps")],
            [1, 6000, 5],
            "GovernanceChangeProposed keys: too short, subject missing",
        ),
        (
            "router",
            [SELECTORS["GovernanceChangeApplied"], short_string("max_single_bps"), 0],
            [2, 6000, 5],
            "too short, eta missing",
        ),
        (
            "router",
            [SELECTORS["GovernanceChangeCancelled"], short_string("x"), 0],
            [1, 1, 2**64],
            "eta=0x10000000000000000 does not fit in 64 bits",
        ),
        ("router", [SELECTORS["KeeperUpdated"], 5], [2], "enabled=0x2 is not a bool"),
        ("router", [SELECTORS["GovernanceParamsUpdated"], 0x0A], [1, 2], "not a printable"),
        ("router", [SELECTORS["AllocationExecuted"], 1], [9, 5000, 1], "allocation length 5000"),
        ("router", [SELECTORS["AllocationExecuted"], 1], [9, 2**250, 1], r"exceeds 1024"),
        ("router", [SELECTORS["AllocationExecuted"], 1], [9, 2, 1], "too short"),
        ("router", [SELECTORS["RebalanceRequested"], 1], [FIELD_PRIME, 0], "not a field element"),
        (
            "risk_engine",
            [SELECTORS["MetricsUpdated"], 0],
            [2**32] + [0] * 7,
            r"MetricsUpdated data: metrics.utilization_bps=0x100000000 does not fit in 32 bits",
        ),
        ("router", [SELECTORS["OwnershipTransferred"], 1], [1, 2], r"keys: 1 unexpected trailing"),
        ("risk_engine", [SELECTORS["OwnershipTransferStarted"]], [1], r"too short, new_owner"),
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


# -- the ABIs (keeper/abi/<Contract>.json) drive the layout -----------------------------------


def test_every_followed_event_is_in_the_shipped_abis() -> None:
    check_event_abis()


def test_every_event_the_contracts_emit_is_followed() -> None:
    """An event the keeper does not know would be quarantined as an unknown selector."""
    kinds: tuple[tuple[ContractKind, str], ...] = (
        ("router", "StrategyRouterV2"),
        ("risk_engine", "RiskEngine"),
    )
    for kind, contract in kinds:
        root = entry(load(SHIPPED, contract), "event", f"::{contract}::Event")
        assert {v["name"] for v in root["variants"]} == set(EVENT_NAMES[kind]), kind


@pytest.mark.devnet
def test_the_freshly_built_abis_match_the_typed_mapping(contract_artifacts: object) -> None:
    # contract_artifacts runs the build, which rewrites keeper/abi/ when sources changed.
    clear_caches()
    check_event_abis()


def _router_event(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return entry(entries, "event", f"::StrategyRouterV2::{name}")


def test_a_member_moved_to_the_keys_is_read_from_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Following an ABI change takes no offsets: the ABI says where each member is."""
    with abi_dir(tmp_path, monkeypatch):
        entries = load(tmp_path, "StrategyRouterV2")
        for member in _router_event(entries, "RebalanceRequested")["members"]:
            member["kind"] = "key"
        save(tmp_path, "StrategyRouterV2", entries)
        event = RebalanceRequested(meta(1, 0, 0), epoch=4, requester=0xAB, by_owner=True)
        keys = [SELECTORS["RebalanceRequested"], 4, 0xAB, 1]
        assert decode_event("router", keys, [], event.meta) == event
        with pytest.raises(DecodeError, match="RebalanceRequested keys: too short, requester"):
            decode_event("router", [SELECTORS["RebalanceRequested"], 4], [0xAB], event.meta)


def test_a_renamed_member_stops_the_decoder_instead_of_quarantining_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with abi_dir(tmp_path, monkeypatch):
        entries = load(tmp_path, "StrategyRouterV2")
        _router_event(entries, "KeeperUpdated")["members"][1]["name"] = "is_enabled"
        save(tmp_path, "StrategyRouterV2", entries)
        with pytest.raises(ChainError, match="is_enabled") as caught:
            decode_event("router", [SELECTORS["RebalanceRequested"], 1], [2], meta(1, 0, 0))
        assert caught.value.code == "abi_mismatch"
