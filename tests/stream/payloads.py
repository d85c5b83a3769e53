"""Test payloads: encode typed events the way the contracts emit them (contracts/README.md)."""

from __future__ import annotations

from collections.abc import Sequence

from keeper.stream.eventlog import Block, RawEvent
from keeper.stream.events import (
    SELECTORS,
    AllocationExecuted,
    ContractKind,
    Event,
    EventMeta,
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
)

ROUTER = 0x0123_4567_89AB_CDEF
RISK_ENGINE = 0x0FED_CBA9_8765_4321
ADDRESSES: dict[int, ContractKind] = {ROUTER: "router", RISK_ENGINE: "risk_engine"}
ADDRESS_OF: dict[ContractKind, int] = {kind: addr for addr, kind in ADDRESSES.items()}


def short_string(text: str) -> int:
    return int.from_bytes(text.encode("ascii"), "big")


def encode(event: Event) -> tuple[list[int], list[int]]:
    """(keys, data) exactly as the contract emits ``event``."""
    sel = SELECTORS[type(event).__name__]
    match event:
        case RebalanceRequested():
            return [sel, event.epoch], [event.requester, int(event.by_owner)]
        case AllocationExecuted():
            return [sel, event.epoch], [
                event.fact_hash,
                len(event.allocation),
                *event.allocation,
                short_string(event.prover_kind),
            ]
        case GovernanceParamsUpdated():
            return [sel, short_string(event.param)], [event.old_value, event.new_value]
        case GovernanceChangeProposed() | GovernanceChangeCancelled() | GovernanceChangeApplied():
            keys = [sel, short_string(event.param), event.subject]
            return keys, [len(event.values), *event.values, event.eta]
        case KeeperUpdated():
            return [sel, event.keeper], [int(event.enabled)]
        case OwnershipTransferred() | OwnershipTransferStarted():
            return [sel], [event.previous_owner, event.new_owner]
        case MetricsUpdated():
            return [sel, event.index], [
                *event.metrics.as_list(),
                event.protocol_count,
                event.commitment,
            ]
        case ModelParamsUpdated():
            params = [*event.old_params.as_list(), *event.new_params.as_list()]
            return [sel], [*params, event.commitment]
        case OracleUpdated():
            return [sel], [event.old_oracle, event.new_oracle]
    raise AssertionError(f"no encoder for {event!r}")


def meta(block: int, tx: int, index: int, address: int = ROUTER, fork: int = 0) -> EventMeta:
    return EventMeta(
        block_number=block,
        block_hash=block_hash(block, fork),
        tx_hash=0x7000_0000 + block * 1000 + tx,
        event_index=index,
        from_address=address,
    )


def block_hash(number: int, fork: int = 0) -> int:
    return 0xB10C_0000_0000 + number * 16 + fork


def rebalance(block: int, tx: int = 0, index: int = 0, epoch: int = 1, fork: int = 0) -> RawEvent:
    event = RebalanceRequested(
        meta(block, tx, index, fork=fork), epoch=epoch, requester=0xAB, by_owner=True
    )
    keys, data = encode(event)
    return RawEvent(event.meta, tuple(keys), tuple(data))


def raw(meta_: EventMeta, keys: Sequence[int], data: Sequence[int]) -> RawEvent:
    return RawEvent(meta_, tuple(keys), tuple(data))


def block(number: int, *events: RawEvent, fork: int = 0) -> Block:
    return Block(number, block_hash(number, fork), events)
