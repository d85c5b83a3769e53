"""Felt payloads decoded by the contracts' ABIs (keeper/abi/<Contract>.json).

scripts/build_contracts.sh writes the ABIs from the compiled contracts; starknet_py's
``AbiParser`` turns them into Cairo types (which members an event keeps in ``keys``, the
order and type of every member). From those types this module builds small readers that
walk a felt list. starknet_py's own serializers (starknet_py.serialization) were not used
for the walk: their ArraySerializer builds ``[item] * length`` from an untrusted length
before reading anything, their reasons do not name the value (and the stream stores
reasons with quarantined events), and their per-member context managers made an event
cost 27-81 us to decode (8-16 us with these readers, 6-11 us with the former hand-written
decoder).

Every reader refuses what does not match exactly, with a reason naming the member:
``epoch=0x... does not fit in 64 bits``, ``too short, requester missing``, ``N unexpected
trailing felt(s)``; an Option's variant is 0 or 1; an array's length is checked against
what is left (and, for events, a cap) before anything is built. The decoded value (int,
bool, dict per struct, list per array, tuple per tuple, None or the value per Option) is
mapped to the keeper's dataclasses by ``Shape``s (shapes.py), bound to the ABI when a
layout is built, so an ABI change fails loudly at the first use.

Parsing an ABI takes starknet_py about a second (it builds a Lark parser per type
string); each is parsed once per process. ``check_view_abis`` / ``check_event_abis`` do it
up front.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from marshmallow import ValidationError
from starknet_py.abi.v2 import AbiParser
from starknet_py.abi.v2.parser import AbiParsingError
from starknet_py.cairo.data_types import (
    ArrayType,
    BoolType,
    CairoType,
    EventType,
    FeltType,
    OptionType,
    StructType,
    TupleType,
    UintType,
)

from keeper.chain.codec import FIELD_PRIME
from keeper.chain.errors import UnexpectedAnswerError
from keeper.chain.shapes import Members, Shape, abi_mismatch
from keeper.core.errors import ChainError

ABI_DIR = Path(__file__).resolve().parents[1] / "abi"


# ------------------------------------------------------------------------------ ABIs


@functools.cache
def contract_abi(contract: str) -> Any:
    """The parsed ABI (starknet_py ``Abi``) of keeper/abi/<contract>.json."""
    path = ABI_DIR / f"{contract}.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return AbiParser(entries).parse()
    except OSError as exc:
        raise ChainError(
            f"cannot read the ABI {path} ({exc.strerror}): the install is incomplete; "
            "reinstall the keeper or run scripts/build_contracts.sh",
            code="abi_missing",
        ) from None
    except (ValueError, TypeError, KeyError, AbiParsingError, ValidationError) as exc:
        raise ChainError(
            f"the ABI {path} cannot be parsed ({type(exc).__name__}: {str(exc)[:200]}); "
            "rebuild it with scripts/build_contracts.sh",
            code="abi_missing",
        ) from None


def view_output_type(contract: str, function: str) -> CairoType:
    """The one output type of ``function`` (in an interface or at the top level)."""
    abi = contract_abi(contract)
    found = [i.items[function] for i in abi.interfaces.values() if function in i.items]
    if function in abi.functions:
        found.append(abi.functions[function])
    where = f"{contract}.{function}"
    if len(found) != 1:
        raise abi_mismatch(where, f"the ABI has {len(found)} functions of that name, not 1")
    outputs = found[0].outputs
    if len(outputs) != 1:
        raise abi_mismatch(where, f"the function returns {len(outputs)} values, not 1")
    output: CairoType = outputs[0]
    return output


def event_type(contract: str, name: str) -> EventType:
    """The struct event emitted as variant ``name`` of the contract's root ``Event`` enum
    (keys[0] is then sn_keccak(name))."""
    abi = contract_abi(contract)
    roots = [e for n, e in abi.events.items() if n.endswith(f"::{contract}::Event")]
    where = f"{contract} event {name}"
    if len(roots) != 1:
        raise abi_mismatch(where, f"the ABI has {len(roots)} root Event enums, not 1")
    variant = roots[0].types.get(name)
    if not isinstance(variant, EventType):
        raise abi_mismatch(where, "the contract's Event enum has no such nested struct event")
    return variant


# --------------------------------------------------------------------------- readers


class _Cursor:
    __slots__ = ("felts", "pos")

    def __init__(self, felts: Sequence[int]) -> None:
        self.felts = felts
        self.pos = 0

    def take(self, path: str) -> int:
        if self.pos >= len(self.felts):
            raise UnexpectedAnswerError(f"too short, {path} missing")
        value = self.felts[self.pos]
        self.pos += 1
        return value

    def left(self) -> int:
        return len(self.felts) - self.pos


class _Reader(Protocol):
    width: int  # the fewest felts a value takes

    def read(self, cursor: _Cursor, path: str) -> Any: ...


class _Felt:
    width = 1

    def read(self, cursor: _Cursor, path: str) -> int:
        value = cursor.take(path)
        if not 0 <= value < FIELD_PRIME:
            raise UnexpectedAnswerError(f"{path}={hex(value)} is not a field element")
        return value


class _Uint:
    width = 1

    def __init__(self, bits: int) -> None:
        self._bits = bits
        self._bound = 2**bits

    def read(self, cursor: _Cursor, path: str) -> int:
        value = cursor.take(path)
        if not 0 <= value < self._bound:
            raise UnexpectedAnswerError(f"{path}={hex(value)} does not fit in {self._bits} bits")
        return value


class _Bool:
    width = 1

    def read(self, cursor: _Cursor, path: str) -> bool:
        value = cursor.take(path)
        if value not in (0, 1):
            raise UnexpectedAnswerError(f"{path}={hex(value)} is not a bool (0 or 1)")
        return value == 1


class _Struct:
    """Members in ABI order, as a dict; at the root (path "") member paths are bare names."""

    def __init__(self, members: Mapping[str, _Reader]) -> None:
        self._members = tuple(members.items())
        self.width = sum(reader.width for reader in members.values())

    def read(self, cursor: _Cursor, path: str) -> dict[str, Any]:
        if not path:
            return {name: reader.read(cursor, name) for name, reader in self._members}
        prefix = path + "."
        return {name: reader.read(cursor, prefix + name) for name, reader in self._members}


class _Tuple:
    def __init__(self, items: Sequence[_Reader]) -> None:
        self._items = tuple(items)
        self.width = sum(reader.width for reader in items)

    def read(self, cursor: _Cursor, path: str) -> tuple[Any, ...]:
        return tuple(reader.read(cursor, f"{path}[{i}]") for i, reader in enumerate(self._items))


class _Array:
    """Length, then that many items; the length is checked before anything is built."""

    width = 1

    def __init__(self, item: _Reader, max_len: int | None) -> None:
        self._item = item
        self._max_len = max_len

    def read(self, cursor: _Cursor, path: str) -> list[Any]:
        length = cursor.take(f"{path} length")
        if length < 0:
            raise UnexpectedAnswerError(f"{path} length {length} is negative")
        if self._max_len is not None and length > self._max_len:
            raise UnexpectedAnswerError(f"{path} length {length} exceeds {self._max_len}")
        left = cursor.left()
        if length * self._item.width > left:
            raise UnexpectedAnswerError(
                f"too short, {path} length {length} but {left} felt(s) follow"
            )
        return [self._item.read(cursor, f"{path}[{i}]") for i in range(length)]


class _Option:
    """Cairo's ``Option``: variant 0 (Some) then the value, or variant 1 (None) alone.
    (starknet_py reads any variant but 1 as Some.)"""

    width = 1

    def __init__(self, value: _Reader) -> None:
        self._value = value

    def read(self, cursor: _Cursor, path: str) -> Any:
        variant = cursor.take(f"{path} variant")
        if variant == 1:
            return None
        if variant != 0:
            raise UnexpectedAnswerError(
                f"{path} variant {hex(variant)} is neither Some (0) nor None (1)"
            )
        return self._value.read(cursor, path)


def _reader(cairo_type: CairoType, where: str, max_array_len: int | None) -> _Reader:
    if isinstance(cairo_type, FeltType):
        return _Felt()
    if isinstance(cairo_type, BoolType):
        return _Bool()
    if isinstance(cairo_type, UintType) and cairo_type.bits < 256:
        return _Uint(cairo_type.bits)
    if isinstance(cairo_type, StructType):
        return _Struct(_readers(cairo_type.types, where, max_array_len))
    if isinstance(cairo_type, TupleType):
        types = cairo_type.types
        return _Tuple([_reader(t, f"{where}[{i}]", max_array_len) for i, t in enumerate(types)])
    if isinstance(cairo_type, ArrayType):
        item = _reader(cairo_type.inner_type, f"{where}[]", max_array_len)
        if item.width < 1:
            raise abi_mismatch(where, "an array of empty items cannot be decoded")
        return _Array(item, max_array_len)
    if isinstance(cairo_type, OptionType):
        return _Option(_reader(cairo_type.type, where, max_array_len))
    raise abi_mismatch(where, f"the keeper's decoder does not support {cairo_type}")


def _readers(
    types: Mapping[str, CairoType], where: str, max_array_len: int | None
) -> dict[str, _Reader]:
    return {name: _reader(t, f"{where}.{name}", max_array_len) for name, t in types.items()}


@dataclass(frozen=True)
class _Payload:
    """Named members read off a whole felt list: trailing felts are refused."""

    root: _Struct

    def decode(self, felts: Sequence[int]) -> dict[str, Any]:
        cursor = _Cursor(felts)
        value = self.root.read(cursor, "")
        extra = cursor.left()
        if extra:
            raise UnexpectedAnswerError(f"{extra} unexpected trailing felt(s)")
        return value


def _payload(types: Mapping[str, CairoType], where: str, max_array_len: int | None) -> _Payload:
    return _Payload(_Struct(_readers(types, where, max_array_len)))


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class ViewLayout:
    """How to read one view's answer: its ABI output type, bound to a shape."""

    function: str
    payload: _Payload
    shape: Shape

    def decode(self, felts: Sequence[int]) -> Any:
        """The typed answer; UnexpectedAnswerError(reason) when the felts do not fit."""
        (value,) = self.payload.decode(felts).values()
        return self.shape.convert(value, self.function)


def view_layout(contract: str, function: str, shape: Shape) -> ViewLayout:
    output = view_output_type(contract, function)
    shape.bind(output, f"{contract}.{function}")
    # The function's name roots the paths in the reasons: get_governance_params.risk_engine.
    payload = _payload({function: output}, f"{contract}.{function}", None)
    return ViewLayout(function, payload, shape)


@dataclass(frozen=True)
class EventLayout:
    """How to read one event's keys (after the selector) and data."""

    name: str
    keys: _Payload
    data: _Payload
    members: Members

    def decode(self, keys: Sequence[int], data: Sequence[int]) -> dict[str, Any]:
        """Members by name, typed; UnexpectedAnswerError("<name> keys|data: why")."""
        values: dict[str, Any] = {}
        for part, felts, payload in (("keys", keys, self.keys), ("data", data, self.data)):
            try:
                values.update(self.members.convert(payload.decode(felts), ""))
            except UnexpectedAnswerError as exc:
                raise UnexpectedAnswerError(f"{self.name} {part}: {exc.message}") from None
        return values


def event_layout(
    contract: str, name: str, shapes: Mapping[str, Shape], *, max_array_len: int
) -> EventLayout:
    """Bind ``shapes`` (one per member, any order) to the event; the ABI says which
    members are keys (``#[key]``) and the order of each part."""
    event = event_type(contract, name)
    where = f"{contract} event {name}"
    members = Members(shapes)
    members.bind(event.types, where, ordered=False)
    key_types = {n: t for n, t in event.types.items() if n in event.keys}
    data_types = {n: t for n, t in event.types.items() if n not in event.keys}
    return EventLayout(
        name,
        keys=_payload(key_types, where, max_array_len),
        data=_payload(data_types, where, max_array_len),
        members=members,
    )
