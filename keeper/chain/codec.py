"""Felts, short strings and chain ids: the keeper's one source of Starknet's constants.

FIELD_PRIME and the curve order come from starknet_py, and so does short-string encoding.
Decoding is ours: ``starknet_py.cairo.felt.decode_shortstring`` accepts any felt (keeping
NULs and control bytes, raising OverflowError past 31 bytes), while here a felt is text
only when it is 1 to 31 printable ASCII bytes; once those bytes are checked, they are the
text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeGuard

from starknet_py.cairo.felt import encode_shortstring
from starknet_py.constants import EC_ORDER, FIELD_PRIME

from keeper.core.errors import ChainError

__all__ = [
    "CURVE_ORDER",
    "FIELD_PRIME",
    "SHORT_STRING_MAX",
    "chain_name",
    "decode_short_string",
    "encode_short_string",
    "felts",
    "is_felt",
    "parse_chain_id",
]

# Order of the STARK curve's generator: a private key is in 1..CURVE_ORDER-1.
CURVE_ORDER: int = EC_ORDER
SHORT_STRING_MAX = 31
_SHORT_STRING_BOUND = 2 ** (8 * SHORT_STRING_MAX)


def is_felt(value: object) -> TypeGuard[int]:
    """An int (not a bool) in 0..FIELD_PRIME-1."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < FIELD_PRIME


def felts(values: Sequence[object], what: str) -> list[int]:
    """``values`` as calldata; ChainError(bad_calldata) naming the first non-felt."""
    out = []
    for i, value in enumerate(values):
        if not is_felt(value):
            raise ChainError(f"{what}[{i}] = {value!r} is not a field element", code="bad_calldata")
        out.append(value)
    return out


def encode_short_string(text: str) -> int:
    """ASCII text of at most 31 characters as a felt; ValueError otherwise."""
    return int(encode_shortstring(text))


def decode_short_string(value: int) -> str | None:
    """The printable ASCII text a felt encodes, or None when it is not one (0 included)."""
    if not 0 < value < _SHORT_STRING_BOUND:
        return None
    data = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if not all(0x20 <= b < 0x7F for b in data):
        return None
    return data.decode("ascii")


def parse_chain_id(text: str) -> int:
    """'SN_SEPOLIA' (a short string) or '0x534e5f5345504f4c4941' (hex) -> int."""
    value = text.strip()
    if value.lower().startswith("0x"):
        return int(value, 16)
    return encode_short_string(value)


def chain_name(chain_id: int) -> str:
    return decode_short_string(chain_id) or hex(chain_id)
