"""keeper.chain.views: view answers decoded by the shipped ABIs into the typed values;
every answer that does not fit exactly is an UnexpectedAnswerError with a reason.

The encoders here are written by hand from the contracts' interfaces (an oracle
independent of the ABI-driven decoder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starknet_py.abi.v2 import AbiParser
from starknet_py.cairo.data_types import (
    ArrayType,
    CairoType,
    FeltType,
    OptionType,
    StructType,
    UintType,
)

from keeper.chain import (
    FIELD_PRIME,
    GovernanceParams,
    PendingChange,
    UnexpectedAnswerError,
    Verification,
    VerificationListElement,
    VerifierConfig,
    check_view_abis,
    encode_short_string,
)
from keeper.chain import views as decoding
from keeper.chain.abi import view_output_type
from prover.model import ModelParams, ProtocolInputs

felt = st.integers(0, FIELD_PRIME - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
governance = st.builds(
    GovernanceParams, u64, u32, u32, u32, u32, felt, felt, felt, felt, *(felt,) * 8, u64
)
protocols = st.lists(st.builds(ProtocolInputs, *(u32 for _ in range(6))), max_size=16)
model_params = st.builds(ModelParams, *(u32 for _ in range(12)))
words = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=31)
configs = st.builds(VerifierConfig, words, words, words, words)
verifications = st.lists(st.builds(VerificationListElement, felt, u32, configs), max_size=5)

HINT = "is the configured address the contract version this keeper supports"


def text(value: str) -> int:
    return encode_short_string(value)


def verification_felts(items: list[VerificationListElement]) -> list[int]:
    out = [len(items)]
    for v in items:
        out += [v.verification_hash, v.security_bits, *v.verifier_config.felts()]
    return out


@pytest.fixture(autouse=True, scope="module")
def _abis_parsed() -> None:
    # Parsing the ABIs takes starknet_py seconds: once, not inside a timed example.
    check_view_abis()


def test_the_shipped_abis_match_the_typed_mapping() -> None:
    check_view_abis()


@given(u64, st.lists(u32, max_size=16), governance, u64, st.integers(0, 10**9), st.booleans())
def test_router_state_round_trips(
    epoch: int,
    allocation: list[int],
    gov: GovernanceParams,
    last: int,
    block: int,
    requested: bool,
) -> None:
    answers = [
        [epoch],
        [len(allocation), *allocation],
        list(gov.as_dict().values()),
        [last],
        [int(requested)],
    ]
    state = decoding.router_state(answers, block)
    assert state.epoch == epoch
    assert state.allocation == tuple(allocation)
    assert state.governance == gov
    assert (state.last_execution_timestamp, state.block_number) == (last, block)
    assert state.rebalance_requested is requested


@given(protocols, model_params)
def test_risk_inputs_round_trip(items: list[ProtocolInputs], params: ModelParams) -> None:
    felts = [len(items), *(x for p in items for x in p.as_list()), *params.as_list()]
    assert decoding.risk_inputs(felts) == (tuple(items), params)


@given(verifications)
def test_verifications_round_trip(items: list[VerificationListElement]) -> None:
    # An empty string is felt 0; it reads back as "" like any other short string.
    assert decoding.verifications(verification_felts(items)) == items


def test_a_config_felt_that_is_no_text_is_shown_as_hex() -> None:
    felts = [1, 0xABC, 96, text("small"), 0x0A, text("stone6"), text("strict")]
    (found,) = decoding.verifications(felts)
    assert found.verifier_config == VerifierConfig("small", "0xa", "stone6", "strict")


@given(felt, u32, configs)
def test_get_verification_round_trips(fact: int, bits: int, config: VerifierConfig) -> None:
    found = decoding.verification([0, fact, bits, *config.felts()])
    assert found == Verification(fact, bits, config)
    assert decoding.verification([1]) is None


def test_get_verification_reads_the_config_exactly() -> None:
    """The keeper asks for a hash it computed from a text pin: a config that is no text
    is not shown as hex there, it is refused."""
    with pytest.raises(UnexpectedAnswerError, match=r"layout=0xa is not a printable short"):
        decoding.verification([0, 0xFAC7, 96, 0x0A, text("k"), text("s"), text("strict")])
    with pytest.raises(UnexpectedAnswerError, match=r"variant 0x2 is neither Some"):
        decoding.verification([2])


@given(st.lists(felt, max_size=4), u64, felt)
def test_pending_change_round_trips(values: list[int], eta: int, subject: int) -> None:
    found = decoding.pending_change("keeper", subject, [0, len(values), *values, eta])
    assert found == PendingChange("keeper", subject, tuple(values), eta)
    assert decoding.pending_change("max_single_bps", 0, [1]) is None


def test_booleans_are_zero_or_one() -> None:
    assert decoding.decode_view("is_keeper", [1]) is True
    assert decoding.decode_view("is_fact_consumed", [0]) is False
    with pytest.raises(UnexpectedAnswerError, match=r"is_keeper=0x2 is not a bool"):
        decoding.decode_view("is_keeper", [2])


GOV = [3600, 500, 5000, 2, 96, 0x4E6, 1, 2, 3, *(text(w) for w in ("small", "k", "s", "strict")),
       0, 0, 0, 0, 172800]


@pytest.mark.parametrize(
    ("view", "felts", "reason"),
    [
        ("get_epoch", [], r"too short, get_epoch missing"),
        ("get_epoch", [1, 2], r"1 unexpected trailing felt\(s\)"),
        ("get_epoch", [2**64], r"get_epoch=0x10000000000000000 does not fit in 64 bits"),
        ("get_inputs_commitment", [FIELD_PRIME], r"is not a field element"),
        ("get_allocation", [3, 1, 2], r"too short, get_allocation length 3 but 2 felt\(s\)"),
        ("get_allocation", [1, 2**32], r"get_allocation\[0\]=0x100000000 does not fit in 32"),
        (
            "get_governance_params",
            GOV[:-1],
            r"too short, get_governance_params.governance_delay_s missing",
        ),
        ("get_governance_params", GOV[:9], r"too short, get_governance_params.direct_layout"),
        ("get_governance_params", [*GOV, 0], r"1 unexpected trailing"),
        (
            "get_governance_params",
            [GOV[0], GOV[1], 2**32, *GOV[3:]],
            r"get_governance_params.max_single_bps=0x100000000 does not fit in 32 bits",
        ),
        ("get_inputs", [0, *range(11)], r"too short, get_inputs\[1\].risk_ceiling missing"),
        ("get_inputs", [1, *range(17)], r"get_inputs\[1\].risk_ceiling missing"),
        ("get_inputs", [-1, *range(12)], r"get_inputs\[0\] length -1"),
        (
            "get_all_verifications_for_fact_hash",
            [2, 1, 96, 1, 2, 3, 4],
            r"length 2 but 6 felt\(s\) follow",
        ),
        ("get_verification", [0, 1, 96, 1, 2, 3], r"too short"),
        ("get_verification", [1, 0], r"1 unexpected trailing"),
        ("get_pending_change", [0, 2, 7], r"length 2 but 1 felt\(s\) follow"),
        ("is_rebalance_requested", [2], r"is not a bool"),
    ],
)
def test_answers_that_do_not_fit_are_refused_with_a_reason(
    view: str, felts: list[int], reason: str
) -> None:
    with pytest.raises(UnexpectedAnswerError, match=reason) as caught:
        decoding.decode_view(view, felts)
    assert caught.value.code == "unexpected_answer"
    assert HINT in str(caught.value)


def test_a_hostile_length_is_refused_before_anything_is_built() -> None:
    # starknet_py's ArraySerializer would first build a list of 2**250 serializers.
    with pytest.raises(UnexpectedAnswerError, match="too short, get_allocation length"):
        decoding.decode_view("get_allocation", [2**250, 1, 2])


# -- Integrity's FactRegistry: the registry the keeper reads in production -------------------
INTEGRITY_CLASSES = Path(os.environ.get("INTEGRITY_CLASSES_DIR", "/work/shared/integrity/classes"))


def _structure(cairo_type: CairoType) -> object:
    """A type with struct names left out (they differ between the two codebases)."""
    if isinstance(cairo_type, StructType):
        return tuple((name, _structure(t)) for name, t in cairo_type.types.items())
    if isinstance(cairo_type, ArrayType):
        return ("array", _structure(cairo_type.inner_type))
    if isinstance(cairo_type, UintType):
        return ("u", cairo_type.bits)
    if isinstance(cairo_type, OptionType):
        return ("option", _structure(cairo_type.type))
    assert isinstance(cairo_type, FeltType), cairo_type
    return "felt"


def test_dev_registry_answers_like_integritys_fact_registry() -> None:
    path = INTEGRITY_CLASSES / "integrity_FactRegistry.contract_class.json"
    if not path.is_file():
        pytest.skip(f"Integrity classes not found at {path} (set INTEGRITY_CLASSES_DIR)")
    raw = json.loads(path.read_text())["abi"]
    integrity = AbiParser(json.loads(raw) if isinstance(raw, str) else raw).parse()
    for view in ("get_all_verifications_for_fact_hash", "get_verification"):
        (function,) = [i.items[view] for i in integrity.interfaces.values() if view in i.items]
        ours = view_output_type(decoding.FACT_REGISTRY, view)
        assert _structure(function.outputs[0]) == _structure(ours), view
