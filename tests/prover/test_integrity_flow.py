"""Which Integrity flow the registrar sends (``prover.integrity.choose_flow``): the monolith
when its whole invoke transaction fits the network's calldata limit and the operator left
``chain.integrity_flow`` at ``auto``; the split otherwise."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prover.integrity import (
    INTEGRITY_FLOWS,
    MAX_TRANSACTION_CALLDATA,
    Call,
    choose_flow,
    guard_full_call,
    parse_proof,
)
from prover.integrity.calldata import ACCOUNT_CALL_OVERHEAD

_SHARED = Path(os.environ.get("INTEGRITY_DIR", Path(__file__).resolve().parents[3] / "shared"
                              / "integrity"))
FIBONACCI = _SHARED / "proofs" / "small_stone6_keccak_fibonacci.proof.json"
ALLOCATION = _SHARED / "proofs" / "allocation_small_stone6_keccak_96bits.proof.json"


def _call(calldata_felts: int) -> Call:
    return Call("verify_proof_full", tuple(range(calldata_felts)))


@given(felts=st.integers(0, 20_000), limit=st.integers(1, 20_000))
def test_auto_sends_the_monolith_exactly_when_its_whole_transaction_fits(
    felts: int, limit: int
) -> None:
    fits = felts + ACCOUNT_CALL_OVERHEAD <= limit
    assert choose_flow(_call(felts), limit, "auto") == ("monolith" if fits else "split")


@given(felts=st.integers(0, 20_000), limit=st.integers(1, 20_000))
def test_split_is_sent_whatever_the_size_when_the_operator_forces_it(
    felts: int, limit: int
) -> None:
    assert choose_flow(_call(felts), limit, "split") == "split"


def test_the_account_framing_counts_against_the_limit() -> None:
    # 4,996 felts of calldata + [n_calls, to, selector, len]: 5,000, the limit itself.
    assert choose_flow(_call(4996), MAX_TRANSACTION_CALLDATA) == "monolith"
    assert choose_flow(_call(4997), MAX_TRANSACTION_CALLDATA) == "split"
    assert INTEGRITY_FLOWS == ("auto", "split")


@pytest.mark.parametrize(("setting", "limit"), [("both", 5000), ("monolith", 5000), ("auto", 0)])
def test_a_bad_setting_or_limit_is_refused_with_what_is_allowed(setting: str, limit: int) -> None:
    with pytest.raises(ValueError, match=r"auto, split|positive"):
        choose_flow(_call(10), limit, setting)  # type: ignore[arg-type]


@pytest.mark.skipif(
    not FIBONACCI.is_file() or not ALLOCATION.is_file(),
    reason=f"Integrity's reference proofs are absent from {FIBONACCI.parent}",
)
def test_the_reference_proofs_through_the_guard() -> None:
    def monolith(path: Path) -> Call:
        return guard_full_call(parse_proof(json.loads(path.read_text())))

    fibonacci, allocation = monolith(FIBONACCI), monolith(ALLOCATION)
    assert (fibonacci.transaction_felts, allocation.transaction_felts) == (3335, 6803)
    assert choose_flow(fibonacci, MAX_TRANSACTION_CALLDATA) == "monolith"
    assert choose_flow(fibonacci, 3334) == "split"
    assert choose_flow(allocation, MAX_TRANSACTION_CALLDATA) == "split"
    assert choose_flow(allocation, 6803) == "monolith"
