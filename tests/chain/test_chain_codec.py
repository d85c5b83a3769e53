"""keeper.chain.codec: the field's constants, calldata felts, short strings, chain ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain import (
    CURVE_ORDER,
    FIELD_PRIME,
    chain_name,
    decode_short_string,
    encode_short_string,
    parse_chain_id,
)
from keeper.chain.codec import felts, is_felt
from keeper.core.errors import ChainError

_PRINTABLE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=31
)


def test_constants_are_starknets() -> None:
    assert FIELD_PRIME == 2**251 + 17 * 2**192 + 1
    # The STARK curve's order (cairo-lang's EC_ORDER).
    assert CURVE_ORDER == 0x800000000000010FFFFFFFFFFFFFFFFB781126DCAE7B2321E66A241ADC64D2F


@pytest.mark.parametrize("value", [0, 1, FIELD_PRIME - 1])
def test_felts_accept_field_elements(value: int) -> None:
    assert felts([value], "output") == [value]
    assert is_felt(value)


@pytest.mark.parametrize("value", [-1, FIELD_PRIME, True, "0x1", 1.0, None])
def test_felts_name_the_first_non_felt(value: object) -> None:
    with pytest.raises(ChainError, match=r"output\[1\] = .* is not a field element") as caught:
        felts([5, value, 7], "output")
    assert caught.value.code == "bad_calldata"


@given(_PRINTABLE)
def test_short_string_round_trip(text: str) -> None:
    assert decode_short_string(encode_short_string(text)) == text


@pytest.mark.parametrize(
    "value",
    [
        0,  # the empty string is no text
        -1,
        0x0A,  # newline
        int.from_bytes(b"ab\x00cd", "big"),  # NUL inside
        int.from_bytes(b"caf\xc3\xa9", "big"),  # UTF-8, not ASCII
        int.from_bytes(b"x" * 32, "big"),  # 32 bytes
        FIELD_PRIME - 1,
    ],
)
def test_felts_that_are_not_printable_short_strings(value: int) -> None:
    assert decode_short_string(value) is None


@pytest.mark.parametrize("text", ["x" * 32, "café"])
def test_encoding_refuses_what_a_felt_cannot_hold(text: str) -> None:
    with pytest.raises(ValueError, match=r"31 characters|ascii"):
        encode_short_string(text)


def test_chain_ids_as_short_string_or_hex() -> None:
    assert parse_chain_id("SN_SEPOLIA") == int.from_bytes(b"SN_SEPOLIA", "big")
    assert parse_chain_id("0x534e5f5345504f4c4941") == parse_chain_id("SN_SEPOLIA")
    assert parse_chain_id(" SN_MAIN ") == int.from_bytes(b"SN_MAIN", "big")


def test_chain_names_are_text_or_hex() -> None:
    assert chain_name(parse_chain_id("SN_MAIN")) == "SN_MAIN"
    assert chain_name(0x1) == "0x1"
