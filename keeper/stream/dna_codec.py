"""Apibara DNA v2 (``dna.v2.stream``, ``starknet.v2``) to and from the keeper's types. Pure.

- Field elements are four big-endian fixed64 limbs, ``x0`` the most significant.
- Cursors: ``order_key`` is the block number, ``unique_key`` the block hash (32 bytes
  big-endian; empty when not known).
- The filter: one ``starknet.v2.Filter`` with an ``EventFilter`` per (contract, selector)
  the keeper decodes — the contract's address, ``keys`` = [selector] (a prefix match),
  succeeded transactions only, no transaction, receipt or siblings; the header in blocks
  with matches and in every live block (so that the stored cursor follows the head on a
  quiet chain, as the RPC source's does; backfilled blocks without matches are skipped).
- ``Data.data[0]``: the serialized ``starknet.v2.Block`` of the one filter; its events
  become ``RawEvent``s. An event whose felts cannot be read is kept as a *problem* event
  (the event log quarantines it); bytes that are not a block at all are a ``StreamError``
  (nothing is stored, the cursor does not move).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError as ProtobufDecodeError

from keeper.stream.dna_proto.dna.v2 import stream_pb2
from keeper.stream.dna_proto.starknet.v2 import common_pb2, data_pb2, filter_pb2
from keeper.stream.errors import StreamError
from keeper.stream.eventlog import Block, Cursor, RawEvent
from keeper.stream.events import ContractKind, EventMeta, event_selectors

LIMB_BITS = 64
LIMB_MASK = (1 << LIMB_BITS) - 1
FELT_BOUND = 1 << 256  # what four limbs can hold
STARKNET_PRIME = 2**251 + 17 * 2**192 + 1  # a felt on chain is below this

FINALITY: dict[str, int] = {
    "accepted": stream_pb2.DATA_FINALITY_ACCEPTED,
    "finalized": stream_pb2.DATA_FINALITY_FINALIZED,
}
PENDING = stream_pb2.DATA_FINALITY_PENDING
FINALIZED = stream_pb2.DATA_FINALITY_FINALIZED
LIVE = stream_pb2.DATA_PRODUCTION_LIVE
BACKFILL = stream_pb2.DATA_PRODUCTION_BACKFILL
HEARTBEAT_MIN_S = 10  # the server refuses intervals outside 10 to 60 s
HEARTBEAT_MAX_S = 60


# -- field elements ------------------------------------------------------------------------
def felt_to_limbs(value: int) -> tuple[int, int, int, int]:
    """(x0, x1, x2, x3), x0 the most significant 64 bits."""
    if not 0 <= value < FELT_BOUND:
        raise ValueError(f"{value:#x} does not fit four 64-bit limbs")
    return (
        (value >> 192) & LIMB_MASK,
        (value >> 128) & LIMB_MASK,
        (value >> 64) & LIMB_MASK,
        value & LIMB_MASK,
    )


def felt_from_limbs(x0: int, x1: int, x2: int, x3: int) -> int:
    for limb in (x0, x1, x2, x3):
        if not 0 <= limb <= LIMB_MASK:
            raise ValueError(f"limb {limb:#x} is not a 64-bit value")
    return (x0 << 192) | (x1 << 128) | (x2 << 64) | x3


def felt_to_proto(value: int) -> Any:
    x0, x1, x2, x3 = felt_to_limbs(value)
    return common_pb2.FieldElement(x0=x0, x1=x1, x2=x2, x3=x3)


def felt_from_proto(felt: Any) -> int:
    # fixed64 fields are 64-bit by construction: no range check on this hot path.
    value: int = (felt.x0 << 192) | (felt.x1 << 128) | (felt.x2 << 64) | felt.x3
    return value


def _felt_text(felt: Any) -> str:
    return hex(felt_from_proto(felt))


# -- cursors -------------------------------------------------------------------------------
def cursor_to_proto(cursor: Cursor) -> Any:
    unique = b"" if cursor.block_hash is None else cursor.block_hash.to_bytes(32, "big")
    return stream_pb2.Cursor(order_key=cursor.block_number, unique_key=unique)


def cursor_from_proto(cursor: Any) -> Cursor:
    unique = bytes(cursor.unique_key)
    if len(unique) > 32:
        raise StreamError(
            f"the DNA server sent a cursor whose block hash has {len(unique)} bytes (at most "
            "32): check that stream.dna_url points at a Starknet DNA v2 stream"
        )
    return Cursor(int(cursor.order_key), int.from_bytes(unique, "big") if unique else None)


# -- request -------------------------------------------------------------------------------
def build_filter(addresses: Mapping[int, ContractKind]) -> bytes:
    """The serialized ``starknet.v2.Filter`` for the followed events of each contract."""
    flt = filter_pb2.Filter(header=filter_pb2.HEADER_FILTER_ON_DATA_OR_ON_NEW_BLOCK)
    next_id = 1
    for address, kind in addresses.items():
        for selector in event_selectors(kind):
            flt.events.append(
                filter_pb2.EventFilter(
                    id=next_id,
                    address=felt_to_proto(address),
                    keys=[filter_pb2.Key(value=felt_to_proto(selector))],
                    transaction_status=filter_pb2.TRANSACTION_STATUS_FILTER_SUCCEEDED,
                    include_transaction=False,
                    include_receipt=False,
                )
            )
            next_id += 1
    return bytes(flt.SerializeToString())


def build_request(
    starting: Cursor | None, *, finality: str, filter_bytes: bytes, heartbeat_s: int
) -> Any:
    """One ``StreamDataRequest``: the stream resumes *after* ``starting`` (None: genesis)."""
    if finality not in FINALITY:
        raise StreamError(f"unknown DNA finality {finality!r}: use one of {sorted(FINALITY)}")
    if not HEARTBEAT_MIN_S <= heartbeat_s <= HEARTBEAT_MAX_S:
        raise StreamError(
            f"DNA heartbeat interval {heartbeat_s} s is outside "
            f"{HEARTBEAT_MIN_S} to {HEARTBEAT_MAX_S} s"
        )
    request = stream_pb2.StreamDataRequest(
        finality=FINALITY[finality],
        filter=[filter_bytes],
        heartbeat_interval=Duration(seconds=heartbeat_s),
    )
    if starting is not None:
        request.starting_cursor.CopyFrom(cursor_to_proto(starting))
    return request


# -- data ----------------------------------------------------------------------------------
def decode_block(raw: bytes, end: Cursor) -> Block:
    """One block of a ``Data`` message (``raw`` = ``data[0]``, ``end`` = its end cursor)."""
    block = data_pb2.Block()
    try:
        block.ParseFromString(raw)
    except ProtobufDecodeError as exc:
        raise StreamError(
            f"the DNA server sent block {end.block_number} as bytes that are not a "
            f"starknet.v2 Block ({exc}); nothing of it was stored. Check that stream.dna_url "
            "points at a Starknet DNA v2 stream"
        ) from exc
    number = end.block_number
    block_hash = end.block_hash
    if block.HasField("header"):
        header_number = int(block.header.block_number)
        if header_number != number:
            raise StreamError(
                f"the DNA server sent a block headed {header_number} with end cursor "
                f"{number}; nothing of it was stored"
            )
        block_hash = felt_from_proto(block.header.block_hash)
    if block_hash is None:
        block_hash = 0  # not known to the server either: events are still unique per tx
    return Block(number, block_hash, tuple(_raw_events(block.events, number, block_hash)))


def _raw_events(events: Iterable[Any], number: int, block_hash: int) -> Iterable[RawEvent]:
    for event in events:
        tx_hash = felt_from_proto(event.transaction_hash)
        # event_index: the position in the block (unique within it, unlike the index in
        # the transaction, which older servers leave at 0). Positional: a hot path.
        meta = EventMeta(
            number, block_hash, tx_hash, event.event_index, felt_from_proto(event.from_address)
        )
        keys = tuple([(k.x0 << 192) | (k.x1 << 128) | (k.x2 << 64) | k.x3 for k in event.keys])
        data = tuple([(d.x0 << 192) | (d.x1 << 128) | (d.x2 << 64) | d.x3 for d in event.data])
        problem = None
        if tx_hash == 0:
            problem = "event without transaction hash"
        elif max(keys, default=0) >= STARKNET_PRIME or max(data, default=0) >= STARKNET_PRIME:
            problem = "a key or data value is not a field element (not below the prime)"
        if problem is None:
            yield RawEvent(meta, keys, data)
        else:
            yield RawEvent(
                meta,
                (),
                (),
                problem=problem,
                raw_keys=tuple(_felt_text(k) for k in event.keys),
                raw_data=tuple(_felt_text(d) for d in event.data),
            )


def data_blocks(data: Any) -> list[Block]:
    """The blocks of one ``Data`` message (one; none when the filter matched nothing)."""
    end = cursor_from_proto(data.end_cursor)
    if len(data.data) > 1:
        raise StreamError(
            f"the DNA server sent {len(data.data)} filters' data for block "
            f"{end.block_number}; the keeper sent one filter"
        )
    return [decode_block(bytes(raw), end) for raw in data.data if raw]


# -- status --------------------------------------------------------------------------------
def status_head(status: Any) -> Cursor | None:
    """The server's head from a ``StatusResponse`` (``current_head``, which servers may leave
    unset, else ``last_ingested``)."""
    for name in ("current_head", "last_ingested"):
        if status.HasField(name):
            return cursor_from_proto(getattr(status, name))
    return None
