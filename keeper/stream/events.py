"""Typed events of StrategyRouterV2 and RiskEngine, and their pure decoder.

Layout (contracts/README.md, "Events"): ``keys[0] = sn_keccak(name)``, then the
``#[key]`` members, then ``data``. Which members are keys, their order and their Cairo
types come from the ABIs in keeper/abi/ (keeper.chain.abi); what the keeper makes of each
member is the typed mapping ``_MEMBERS`` below. Following an ABI change means editing
that mapping and the dataclasses, never offsets; a mapping that no longer matches the ABI
raises ChainError ``abi_mismatch`` at the first decode (``check_event_abis`` at start-up).

``decode_event`` never guesses: a payload that does not match exactly (wrong length,
integer out of range, non-ASCII short string, unknown selector) raises ``DecodeError`` with
the reason, and the stream quarantines it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from starknet_py.hash.selector import get_selector_from_name

from keeper.chain.abi import EventLayout, event_layout
from keeper.chain.codec import FIELD_PRIME
from keeper.chain.errors import UnexpectedAnswerError
from keeper.chain.shapes import BOOL, INT, SHORT_STRING, Items, Record, Shape
from keeper.stream.errors import DecodeError
from prover.model import ModelParams, ProtocolInputs

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
    by_owner: bool  # the owner asked: the schedule is lifted for this epoch on-chain


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
    param: str  # e.g. 'max_single_bps'; RiskEngine's: only 'governance_delay_s'
    old_value: int
    new_value: int
    contract: ContractKind = "router"  # both contracts emit it


@dataclass(frozen=True, slots=True)
class GovernanceChangeProposed:
    meta: EventMeta
    param: str  # a proposal param, e.g. 'max_single_bps', 'direct_verifier', 'keeper'
    subject: int  # the keeper for param 'keeper', else 0
    values: tuple[int, ...]
    eta: int  # block timestamp from which the owner may apply it
    contract: ContractKind = "router"  # both contracts emit it (RiskEngine: its own params)


@dataclass(frozen=True, slots=True)
class GovernanceChangeCancelled:
    meta: EventMeta
    param: str
    subject: int
    values: tuple[int, ...]  # the dropped proposal
    eta: int
    contract: ContractKind = "router"


@dataclass(frozen=True, slots=True)
class GovernanceChangeApplied:
    meta: EventMeta
    param: str
    subject: int
    values: tuple[int, ...]  # GovernanceParamsUpdated / KeeperUpdated follow in the same tx
    eta: int
    contract: ContractKind = "router"


@dataclass(frozen=True, slots=True)
class KeeperUpdated:
    meta: EventMeta
    keeper: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class OwnershipTransferStarted:
    meta: EventMeta
    contract: ContractKind  # both contracts emit it
    previous_owner: int  # the current owner
    new_owner: int  # the pending owner; 0 = a pending transfer was cancelled


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
    | GovernanceChangeProposed
    | GovernanceChangeCancelled
    | GovernanceChangeApplied
    | GovernanceParamsUpdated
    | KeeperUpdated
    | OwnershipTransferStarted
    | OwnershipTransferred
    | MetricsUpdated
    | ModelParamsUpdated
    | OracleUpdated
)

EVENT_NAMES: dict[ContractKind, tuple[str, ...]] = {
    "router": (
        "AllocationExecuted",
        "RebalanceRequested",
        "GovernanceChangeProposed",
        "GovernanceChangeCancelled",
        "GovernanceChangeApplied",
        "GovernanceParamsUpdated",
        "KeeperUpdated",
        "OwnershipTransferStarted",
        "OwnershipTransferred",
    ),
    "risk_engine": (
        "MetricsUpdated",
        "ModelParamsUpdated",
        "OracleUpdated",
        "GovernanceChangeProposed",
        "GovernanceChangeCancelled",
        "GovernanceChangeApplied",
        "GovernanceParamsUpdated",
        "OwnershipTransferStarted",
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


_ABI_CONTRACTS: dict[ContractKind, str] = {
    "router": "StrategyRouterV2",
    "risk_engine": "RiskEngine",
}

# The typed mapping: event -> (dataclass, what the keeper makes of each ABI member).
# Events both contracts emit (ownership, governance) also get ``contract``; every event
# ``meta``.
_CHANGE: Mapping[str, Shape] = {
    "param": SHORT_STRING,
    "subject": INT,
    "values": Items(INT),
    "eta": INT,
}
_OWNERS: Mapping[str, Shape] = {"previous_owner": INT, "new_owner": INT}
_BOTH_CONTRACTS = frozenset(
    {
        "OwnershipTransferStarted",
        "OwnershipTransferred",
        "GovernanceChangeProposed",
        "GovernanceChangeCancelled",
        "GovernanceChangeApplied",
        "GovernanceParamsUpdated",
    }
)
_MEMBERS: dict[str, tuple[Callable[..., Event], Mapping[str, Shape]]] = {
    "RebalanceRequested": (
        RebalanceRequested,
        {"epoch": INT, "requester": INT, "by_owner": BOOL},
    ),
    "GovernanceChangeProposed": (GovernanceChangeProposed, _CHANGE),
    "GovernanceChangeCancelled": (GovernanceChangeCancelled, _CHANGE),
    "GovernanceChangeApplied": (GovernanceChangeApplied, _CHANGE),
    "AllocationExecuted": (
        AllocationExecuted,
        {"epoch": INT, "fact_hash": INT, "allocation": Items(INT), "prover_kind": SHORT_STRING},
    ),
    "GovernanceParamsUpdated": (
        GovernanceParamsUpdated,
        {"param": SHORT_STRING, "old_value": INT, "new_value": INT},
    ),
    "KeeperUpdated": (KeeperUpdated, {"keeper": INT, "enabled": BOOL}),
    "OwnershipTransferStarted": (OwnershipTransferStarted, _OWNERS),
    "OwnershipTransferred": (OwnershipTransferred, _OWNERS),
    "MetricsUpdated": (
        MetricsUpdated,
        {
            "index": INT,
            "metrics": Record(ProtocolInputs),
            "protocol_count": INT,
            "commitment": INT,
        },
    ),
    "ModelParamsUpdated": (
        ModelParamsUpdated,
        {"old_params": Record(ModelParams), "new_params": Record(ModelParams), "commitment": INT},
    ),
    "OracleUpdated": (OracleUpdated, {"old_oracle": INT, "new_oracle": INT}),
}


@functools.cache
def _layouts() -> dict[tuple[ContractKind, str], EventLayout]:
    return {
        (kind, name): event_layout(
            _ABI_CONTRACTS[kind], name, _MEMBERS[name][1], max_array_len=_SPAN_MAX
        )
        for kind in CONTRACT_KINDS
        for name in EVENT_NAMES[kind]
    }


def check_event_abis() -> None:
    """Bind every followed event's mapping to its ABI now (ChainError ``abi_mismatch``)."""
    _layouts()


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
    try:
        members = _layouts()[(contract_kind, name)].decode(keys[1:], data)
    except UnexpectedAnswerError as exc:
        raise DecodeError(exc.message) from None
    if name in _BOTH_CONTRACTS:
        members["contract"] = contract_kind
    return _MEMBERS[name][0](meta=meta, **members)


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
