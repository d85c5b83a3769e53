"""The typed mapping from ABI values to the keeper's dataclasses.

A ``Shape`` says what the keeper makes of one ABI member: ``bind`` checks, once, that the
ABI's type is one the shape can read (raising ChainError ``abi_mismatch`` otherwise), and
``convert`` turns a decoded value (int, bool, dict per struct, list per array, tuple per
tuple) into the typed one, raising UnexpectedAnswerError with a reason when the value
cannot be one (a felt that is no short string, say).

``Record(cls)`` maps a struct onto a dataclass by member name and requires the members to
be the dataclass's fields in the same order; following an ABI change means editing these
shapes and dataclasses, never offsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, Protocol

from starknet_py.cairo.data_types import (
    ArrayType,
    BoolType,
    CairoType,
    FeltType,
    OptionType,
    StructType,
    TupleType,
    UintType,
)

from keeper.chain.codec import decode_short_string
from keeper.chain.errors import UnexpectedAnswerError
from keeper.core.errors import ChainError


class Shape(Protocol):
    # True when the decoder's value already is the typed one (ints, bools): not converted.
    passthrough: bool

    def bind(self, cairo_type: CairoType, where: str) -> None: ...

    def convert(self, value: Any, name: str) -> Any: ...


def abi_mismatch(where: str, problem: str) -> ChainError:
    return ChainError(
        f"{where}: {problem}. keeper/abi/ and the keeper's typed mapping disagree: rebuild "
        "with scripts/build_contracts.sh and update keeper/chain/views.py or "
        "keeper/stream/events.py to the contract's new interface",
        code="abi_mismatch",
    )


def _require(cairo_type: CairoType, accepted: tuple[type, ...], where: str, what: str) -> None:
    if not isinstance(cairo_type, accepted):
        raise abi_mismatch(where, f"the ABI has {cairo_type}, the keeper expects {what}")


class _Int:
    """A felt or an unsigned integer (its range was checked by the decoder)."""

    passthrough = True

    def bind(self, cairo_type: CairoType, where: str) -> None:
        _require(cairo_type, (FeltType, UintType), where, "a felt or an unsigned integer")

    def convert(self, value: Any, name: str) -> int:
        return int(value)


class _Bool:
    passthrough = True

    def bind(self, cairo_type: CairoType, where: str) -> None:
        _require(cairo_type, (BoolType,), where, "a bool")

    def convert(self, value: Any, name: str) -> bool:
        return bool(value)


class _ShortString:
    """A felt252 holding printable ASCII; 0 is the empty string. Anything else is refused,
    or, with ``hex_fallback``, shown as hex (for values the keeper only displays)."""

    passthrough = False

    def __init__(self, *, hex_fallback: bool) -> None:
        self._hex_fallback = hex_fallback

    def bind(self, cairo_type: CairoType, where: str) -> None:
        _require(cairo_type, (FeltType,), where, "a felt252 short string")

    def convert(self, value: Any, name: str) -> str:
        text = "" if value == 0 else decode_short_string(value)
        if text is not None:
            return text
        if self._hex_fallback:
            return hex(value)
        raise UnexpectedAnswerError(f"{name}={hex(value)} is not a printable short string")


INT: Shape = _Int()
BOOL: Shape = _Bool()
SHORT_STRING: Shape = _ShortString(hex_fallback=False)
SHORT_STRING_OR_HEX: Shape = _ShortString(hex_fallback=True)


class Items:
    """An Array or Span, as a tuple of ``item``."""

    passthrough = False

    def __init__(self, item: Shape) -> None:
        self._item = item

    def bind(self, cairo_type: CairoType, where: str) -> None:
        _require(cairo_type, (ArrayType,), where, "an array")
        assert isinstance(cairo_type, ArrayType)
        self._item.bind(cairo_type.inner_type, f"{where}[]")

    def convert(self, value: Any, name: str) -> tuple[Any, ...]:
        if self._item.passthrough:
            return tuple(value)
        return tuple(self._item.convert(v, f"{name}[{i}]") for i, v in enumerate(value))


class Maybe:
    """A Cairo ``Option``: None, or the value as ``value`` makes it."""

    passthrough = False

    def __init__(self, value: Shape) -> None:
        self._value = value

    def bind(self, cairo_type: CairoType, where: str) -> None:
        _require(cairo_type, (OptionType,), where, "an Option")
        assert isinstance(cairo_type, OptionType)
        self._value.bind(cairo_type.type, where)

    def convert(self, value: Any, name: str) -> Any:
        return None if value is None else self._value.convert(value, name)


class TupleOf:
    """A Cairo tuple, as a Python tuple of the members' shapes."""

    passthrough = False

    def __init__(self, *members: Shape) -> None:
        self._members = members

    def bind(self, cairo_type: CairoType, where: str) -> None:
        _require(cairo_type, (TupleType,), where, f"a tuple of {len(self._members)}")
        assert isinstance(cairo_type, TupleType)
        if len(cairo_type.types) != len(self._members):
            raise abi_mismatch(
                where,
                f"the ABI's tuple has {len(cairo_type.types)} members, not {len(self._members)}",
            )
        for i, (shape, member) in enumerate(zip(self._members, cairo_type.types, strict=True)):
            shape.bind(member, f"{where}[{i}]")

    def convert(self, value: Any, name: str) -> tuple[Any, ...]:
        return tuple(
            shape.convert(v, f"{name}[{i}]")
            for i, (shape, v) in enumerate(zip(self._members, value, strict=True))
        )


class Record:
    """A struct as the dataclass ``cls``: members = the fields, same names, same order.
    Fields are integers unless ``field_shapes`` says otherwise."""

    passthrough = False

    def __init__(self, cls: type[Any], **field_shapes: Shape) -> None:
        assert is_dataclass(cls)
        self._cls = cls
        self._names = tuple(f.name for f in fields(cls))
        unknown = set(field_shapes) - set(self._names)
        assert not unknown, f"{cls.__name__} has no field {unknown}"
        self._members = Members({n: field_shapes.get(n, INT) for n in self._names})

    def bind(self, cairo_type: CairoType, where: str) -> None:
        _require(cairo_type, (StructType,), where, f"a struct like {self._cls.__name__}")
        assert isinstance(cairo_type, StructType)
        self._members.bind(cairo_type.types, where, ordered=True)

    def convert(self, value: Any, name: str) -> Any:
        return build(self._cls, self._members.convert(value, name))


class Members:
    """Shapes of named members (a struct's or an event's), bound and converted together."""

    def __init__(self, shapes: Mapping[str, Shape]) -> None:
        self._shapes = dict(shapes)
        self._converted = tuple((m, shape) for m, shape in shapes.items() if not shape.passthrough)

    def bind(self, members: Mapping[str, CairoType], where: str, *, ordered: bool) -> None:
        """Check the ABI's ``members`` are exactly these (in this order when ``ordered``)."""
        names = list(self._shapes)
        same = list(members) == names if ordered else set(members) == set(names)
        if not same:
            raise abi_mismatch(
                where,
                f"the ABI has members ({', '.join(members)}), the keeper maps ({', '.join(names)})",
            )
        for member, cairo_type in members.items():
            self._shapes[member].bind(cairo_type, f"{where}.{member}")

    def convert(self, value: dict[str, Any], name: str) -> dict[str, Any]:
        """``value`` (a fresh dict from the decoder) with its members converted in place."""
        for member, shape in self._converted:
            if member in value:
                value[member] = shape.convert(value[member], f"{name}.{member}" if name else member)
        return value


def build(cls: Any, values: Mapping[str, Any]) -> Any:
    """``cls(**values)``; a value the class refuses (its own checks) is an unexpected answer."""
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UnexpectedAnswerError(f"{getattr(cls, '__name__', cls)}: {exc}") from None
