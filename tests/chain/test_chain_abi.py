"""keeper.chain.abi: an ABI that no longer matches the keeper's typed mapping is a loud
ChainError (abi_mismatch) when the mapping is bound, never a silently shifted field; a
missing or broken ABI file is abi_missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keeper.chain import UnexpectedAnswerError, VerifierConfig, check_view_abis
from keeper.chain import views as decoding
from keeper.chain.abi import ViewLayout, view_layout
from keeper.chain.shapes import SHORT_STRING, Maybe, Record
from keeper.core.errors import ChainError
from tests.chain.abi_files import abi_dir, entry, load, save

ROUTER = "StrategyRouterV2"


def edit_router(directory: Path, change: Any) -> None:
    entries = load(directory, ROUTER)
    change(entries)
    save(directory, ROUTER, entries)


def router_function(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    interface = entry(entries, "interface", "IStrategyRouterV2")
    (function,) = [f for f in interface["items"] if f["name"] == name]
    return function


def governance_members(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = entry(entries, "struct", "::GovernanceParams")["members"]
    return members


def assert_mismatch(*words: str) -> None:
    with pytest.raises(ChainError) as caught:
        check_view_abis()
    assert caught.value.code == "abi_mismatch"
    for word in words:
        assert word in str(caught.value)
    assert "scripts/build_contracts.sh" in str(caught.value)


def test_a_member_added_to_a_struct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with abi_dir(tmp_path, monkeypatch):
        edit_router(
            tmp_path,
            lambda e: governance_members(e).append(
                {"name": "timelock_s", "type": "core::integer::u64"}
            ),
        )
        assert_mismatch("get_governance_params", "timelock_s")


def test_struct_members_in_another_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with abi_dir(tmp_path, monkeypatch):
        edit_router(tmp_path, lambda e: governance_members(e).reverse())
        assert_mismatch("get_governance_params", "risk_engine, child_program_hash")


def test_a_type_the_mapping_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def epoch_becomes_an_array(entries: list[dict[str, Any]]) -> None:
        router_function(entries, "get_epoch")["outputs"] = [
            {"type": "core::array::Array::<core::felt252>"}
        ]

    with abi_dir(tmp_path, monkeypatch):
        edit_router(tmp_path, epoch_becomes_an_array)
        assert_mismatch("get_epoch", "a felt or an unsigned integer")


def test_a_type_the_decoder_does_not_support(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def epoch_becomes_u256(entries: list[dict[str, Any]]) -> None:
        router_function(entries, "get_epoch")["outputs"] = [{"type": "core::integer::u256"}]

    with abi_dir(tmp_path, monkeypatch):
        edit_router(tmp_path, epoch_becomes_u256)
        assert_mismatch("get_epoch", "does not support")


def test_a_view_gone_from_the_abi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def remove_is_keeper(entries: list[dict[str, Any]]) -> None:
        interface = entry(entries, "interface", "IStrategyRouterV2")
        interface["items"] = [f for f in interface["items"] if f["name"] != "is_keeper"]

    with abi_dir(tmp_path, monkeypatch):
        edit_router(tmp_path, remove_is_keeper)
        assert_mismatch("StrategyRouterV2.is_keeper", "0 functions")


def test_a_new_view_in_the_abi_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def add_a_view(entries: list[dict[str, Any]]) -> None:
        interface = entry(entries, "interface", "IStrategyRouterV2")
        interface["items"].append(
            {
                "type": "function",
                "name": "get_pending_governance",
                "inputs": [],
                "outputs": [{"type": "core::integer::u64"}],
                "state_mutability": "view",
            }
        )

    with abi_dir(tmp_path, monkeypatch):
        edit_router(tmp_path, add_a_view)
        check_view_abis()
        assert decoding.decode_view("get_epoch", [7]) == 7


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "cannot read"), ("[{", "cannot be parsed")]
)
def test_a_missing_or_broken_abi_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, problem: str
) -> None:
    with abi_dir(tmp_path, monkeypatch):
        path = tmp_path / f"{ROUTER}.json"
        if content is None:
            path.unlink()
        else:
            path.write_text(content)
        with pytest.raises(ChainError, match=problem) as caught:
            check_view_abis()
        assert caught.value.code == "abi_missing"


# -- Option (DevFactRegistry.get_verification, as Integrity's) --------------------------------


@dataclass(frozen=True)
class RegisteredVerification:
    fact_hash: int
    security_bits: int
    verifier_config: VerifierConfig


def get_verification() -> ViewLayout:
    config = Record(
        VerifierConfig,
        layout=SHORT_STRING,
        hasher=SHORT_STRING,
        stone_version=SHORT_STRING,
        memory_verification=SHORT_STRING,
    )
    shape = Maybe(Record(RegisteredVerification, verifier_config=config))
    return view_layout("DevFactRegistry", "get_verification", shape)


def test_an_option_reads_some_or_none() -> None:
    layout = get_verification()
    config = VerifierConfig("small", "keccak_160_lsb", "stone6", "strict")
    assert layout.decode([0, 0xFAC7, 96, *config.felts()]) == RegisteredVerification(
        0xFAC7, 96, config
    )
    assert layout.decode([1]) is None


@pytest.mark.parametrize(
    ("felts", "reason"),
    [
        ([2, 0xFAC7, 96, 1, 2, 3, 4], r"get_verification variant 0x2 is neither Some"),
        ([1, 0xFAC7], r"1 unexpected trailing"),
        ([0, 0xFAC7, 96], r"too short, get_verification.verifier_config.layout missing"),
        ([], r"too short, get_verification variant missing"),
    ],
)
def test_an_option_that_does_not_fit(felts: list[int], reason: str) -> None:
    with pytest.raises(UnexpectedAnswerError, match=reason):
        get_verification().decode(felts)
