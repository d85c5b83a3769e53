"""Typed events of StrategyRouterV2 and RiskEngine, and their pure decoder.

Layout (contracts/README.md, "Events"): ``keys[0] = sn_keccak(name)``, then the
``#[key]`` members in order, then ``data`` in order; integers, addresses and short strings
are one felt each, ``bool`` is 0/1, a struct is its members in order and a ``Span`` is its
length then its items. The decoders are written by hand against that layout (fast, and
every check has a reason); tests cross-check them with the ABI JSON in keeper/abi/.

``decode_event`` never guesses: a payload that does not match exactly (wrong length,
integer out of range, non-ASCII short string, unknown selector) raises ``DecodeError`` with
the reason, and the stream quarantines it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from starknet_py.hash.selector import get_selector_from_name

from keeper.stream.errors import DecodeError
from prover.model import ModelParams, ProtocolInputs

FIELD_PRIME = 2**251 + 17 * 2**192 + 1
_U32 = 2**32
_U64 = 2**64
_SPAN_MAX = 1024  # longer than any allocation the router accepts; guards a hostile length

ContractKind = Literal["router", "risk_engine"]
CONTRACT_KINDS: tuple[ContractKind, ...] = ("router", "risk_engine")


@dataclass(frozen=True, slots=True)
class EventMeta:
    """Where an event sits on chain. Felts are ints."""

    block_number: int
    block_hash: int
    tx_hash: int
    event_index: int
    from_address: int


@dataclass(frozen=True, slots=True)
class RebalanceRequested:
    meta: EventMeta
    epoch: int
    requester: int


@dataclass(frozen=True, slots=True)
class AllocationExecuted:
    meta: EventMeta
    epoch: int  # the epoch that executed; the router is now at epoch + 1
    fact_hash: int
    allocation: tuple[int, ...]  # bps per protocol
    prover_kind: str  # 'direct' | 'bootloaded'


@dataclass(frozen=True, slots=True)
class GovernanceParamsUpdated:
    meta: EventMeta
    param: str  # e.g. 'max_single_bps'
    old_value: int
    new_value: int


@dataclass(frozen=True, slots=True)
class KeeperUpdated:
    meta: EventMeta
    keeper: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class OwnershipTransferred:
    meta: EventMeta
    contract: ContractKind  # both contracts emit it
    previous_owner: int
    new_owner: int


@dataclass(frozen=True, slots=True)
class MetricsUpdated:
    meta: EventMeta
    index: int
    metrics: ProtocolInputs
    protocol_count: int
    commitment: int  # the inputs commitment after the whole transaction


@dataclass(frozen=True, slots=True)
class ModelParamsUpdated:
    meta: EventMeta
    old_params: ModelParams
    new_params: ModelParams
    commitment: int


@dataclass(frozen=True, slots=True)
class OracleUpdated:
    meta: EventMeta
    old_oracle: int
    new_oracle: int


Event = (
    RebalanceRequested
    | AllocationExecuted
    | GovernanceParamsUpdated
    | KeeperUpdated
    | OwnershipTransferred
    | MetricsUpdated
    | ModelParamsUpdated
    | OracleUpdated
)

EVENT_NAMES: dict[ContractKind, tuple[str, ...]] = {
    "router": (
        "AllocationExecuted",
        "RebalanceRequested",
        "GovernanceParamsUpdated",
        "KeeperUpdated",
        "OwnershipTransferred",
    ),
    "risk_engine": (
        "MetricsUpdated",
        "ModelParamsUpdated",
        "OracleUpdated",
        "OwnershipTransferred",
    ),
}

SELECTORS: dict[str, int] = {
    name: get_selector_from_name(name) for names in EVENT_NAMES.values() for name in names
}


def event_selectors(kind: ContractKind) -> tuple[int, ...]:
    """keys[0] of every event the keeper follows on that contract (the stream filter)."""
    return tuple(SELECTORS[name] for name in EVENT_NAMES[kind])


def event_name(kind: ContractKind, keys: Sequence[int]) -> str | None:
    """The event's name from its selector, or None when unknown (or no keys)."""
    if not keys:
        return None
    for name in EVENT_NAMES[kind]:
        if SELECTORS[name] == keys[0]:
            return name
    return None


class _Reader:
    """Reads typed values off a felt list; any mismatch is a DecodeError naming the field."""

    def __init__(self, values: Sequence[int], where: str) -> None:
        self._values = values
        self._pos = 0
        self._where = where

    def felt(self, name: str) -> int:
        if self._pos >= len(self._values):
            raise DecodeError(f"{self._where}: too short, {name} missing")
        value = self._values[self._pos]
        self._pos += 1
        return value

    def uint(self, name: str, bound: int) -> int:
        value = self.felt(name)
        if value >= bound:
            bits = bound.bit_length() - 1
            raise DecodeError(f"{self._where}: {name}={hex(value)} does not fit in {bits} bits")
        return value

    def boolean(self, name: str) -> bool:
        value = self.felt(name)
        if value not in (0, 1):
            raise DecodeError(f"{self._where}: {name}={hex(value)} is not a bool (0 or 1)")
        return value == 1

    def short_string(self, name: str) -> str:
        value = self.felt(name)
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        text = raw.decode("latin-1")
        if len(raw) > 31 or not raw.isascii() or not text.isprintable():
            raise DecodeError(f"{self._where}: {name}={hex(value)} is not a printable short string")
        return text

    def u32_span(self, name: str) -> tuple[int, ...]:
        length = self.felt(f"{name} length")
        if length > _SPAN_MAX:
            raise DecodeError(f"{self._where}: {name} length {length} exceeds {_SPAN_MAX}")
        return tuple(self.uint(f"{name}[{i}]", _U32) for i in range(length))

    def model_params(self, name: str) -> ModelParams:
        return ModelParams(*(self.uint(f"{name}[{i}]", _U32) for i in range(12)))

    def protocol_inputs(self) -> ProtocolInputs:
        return ProtocolInputs(*(self.uint(f"metrics[{i}]", _U32) for i in range(6)))

    def end(self) -> None:
        extra = len(self._values) - self._pos
        if extra:
            raise DecodeError(f"{self._where}: {extra} unexpected trailing felt(s)")


_Decoder = Callable[[ContractKind, _Reader, _Reader, EventMeta], Event]


def _rebalance_requested(_: ContractKind, k: _Reader, d: _Reader, meta: EventMeta) -> Event:
    return RebalanceRequested(meta, k.uint("epoch", _U64), d.felt("requester"))


def _allocation_executed(_: ContractKind, k: _Reader, d: _Reader, meta: EventMeta) -> Event:
    return AllocationExecuted(
        meta,
        epoch=k.uint("epoch", _U64),
        fact_hash=d.felt("fact_hash"),
        allocation=d.u32_span("allocation"),
        prover_kind=d.short_string("prover_kind"),
    )


def _governance_params_updated(_: ContractKind, k: _Reader, d: _Reader, meta: EventMeta) -> Event:
    return GovernanceParamsUpdated(
        meta, k.short_string("param"), d.felt("old_value"), d.felt("new_value")
    )


def _keeper_updated(_: ContractKind, k: _Reader, d: _Reader, meta: EventMeta) -> Event:
    return KeeperUpdated(meta, k.felt("keeper"), d.boolean("enabled"))


def _ownership_transferred(kind: ContractKind, _: _Reader, d: _Reader, meta: EventMeta) -> Event:
    return OwnershipTransferred(meta, kind, d.felt("previous_owner"), d.felt("new_owner"))


def _metrics_updated(_: ContractKind, k: _Reader, d: _Reader, meta: EventMeta) -> Event:
    return MetricsUpdated(
        meta,
        index=k.uint("index", _U32),
        metrics=d.protocol_inputs(),
        protocol_count=d.uint("protocol_count", _U32),
        commitment=d.felt("commitment"),
    )


def _model_params_updated(_: ContractKind, __: _Reader, d: _Reader, meta: EventMeta) -> Event:
    return ModelParamsUpdated(
        meta, d.model_params("old_params"), d.model_params("new_params"), d.felt("commitment")
    )


def _oracle_updated(_: ContractKind, __: _Reader, d: _Reader, meta: EventMeta) -> Event:
    return OracleUpdated(meta, d.felt("old_oracle"), d.felt("new_oracle"))


_DECODERS: dict[str, _Decoder] = {
    "RebalanceRequested": _rebalance_requested,
    "AllocationExecuted": _allocation_executed,
    "GovernanceParamsUpdated": _governance_params_updated,
    "KeeperUpdated": _keeper_updated,
    "OwnershipTransferred": _ownership_transferred,
    "MetricsUpdated": _metrics_updated,
    "ModelParamsUpdated": _model_params_updated,
    "OracleUpdated": _oracle_updated,
}


def decode_event(
    contract_kind: ContractKind, keys: Sequence[int], data: Sequence[int], meta: EventMeta
) -> Event:
    """Decode one emitted event of ``contract_kind``; DecodeError says why it cannot be."""
    for value in (*keys, *data):
        if not 0 <= value < FIELD_PRIME:
            raise DecodeError(f"{hex(value)} is not a field element")
    name = event_name(contract_kind, keys)
    if name is None:
        selector = hex(keys[0]) if keys else "none (no keys)"
        raise DecodeError(f"unknown {contract_kind} event selector {selector}")
    key_reader = _Reader(keys[1:], f"{name} keys")
    data_reader = _Reader(data, f"{name} data")
    event = _DECODERS[name](contract_kind, key_reader, data_reader, meta)
    key_reader.end()
    data_reader.end()
    return event


def parse_felts(values: Sequence[object], what: str) -> tuple[int, ...]:
    """Hex strings (as JSON-RPC sends them) to ints; DecodeError on anything else."""
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.startswith("0x"):
            raise DecodeError(f"{what}[{i}]={value!r} is not a 0x-prefixed hex felt")
        try:
            out.append(int(value, 16))
        except ValueError:
            raise DecodeError(f"{what}[{i}]={value!r} is not valid hex") from None
    return tuple(out)
