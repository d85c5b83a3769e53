"""DNA v2 codec: felts, cursors, the filter and request, blocks into the keeper's events."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.stream.dna_codec import (
    FELT_BOUND,
    STARKNET_PRIME,
    build_filter,
    build_request,
    cursor_from_proto,
    cursor_to_proto,
    data_blocks,
    decode_block,
    felt_from_limbs,
    felt_from_proto,
    felt_to_limbs,
    felt_to_proto,
    status_head,
)
from keeper.stream.dna_proto.dna.v2 import stream_pb2
from keeper.stream.dna_proto.starknet.v2 import common_pb2, data_pb2, filter_pb2
from keeper.stream.errors import StreamError
from keeper.stream.eventlog import Cursor, EventLog
from keeper.stream.events import (
    SELECTORS,
    AllocationExecuted,
    EventMeta,
    RebalanceRequested,
    event_selectors,
)
from tests.stream.payloads import ADDRESSES, RISK_ENGINE, ROUTER, encode

felts = st.integers(min_value=0, max_value=FELT_BOUND - 1)
limbs = st.integers(min_value=0, max_value=2**64 - 1)


@given(felts)
def test_felt_round_trips_through_limbs_and_the_wire(value: int) -> None:
    assert felt_from_limbs(*felt_to_limbs(value)) == value
    wire = felt_to_proto(value).SerializeToString()
    assert felt_from_proto(common_pb2.FieldElement.FromString(wire)) == value


@given(limbs, limbs, limbs, limbs)
def test_limbs_are_big_endian_x0_most_significant(x0: int, x1: int, x2: int, x3: int) -> None:
    value = felt_from_limbs(x0, x1, x2, x3)
    assert value.to_bytes(32, "big") == b"".join(x.to_bytes(8, "big") for x in (x0, x1, x2, x3))
    assert felt_to_limbs(value) == (x0, x1, x2, x3)


def test_limb_layout_on_known_values() -> None:
    assert felt_to_limbs(1) == (0, 0, 0, 1)
    assert felt_to_limbs(1 << 64) == (0, 0, 1, 0)
    assert felt_to_limbs(STARKNET_PRIME - 1) == (0x0800000000000011, 0, 0, 0)
    proto = felt_to_proto(0x0102030405060708_1112131415161718_2122232425262728_3132333435363738)
    assert (proto.x0, proto.x1, proto.x2, proto.x3) == (
        0x0102030405060708,
        0x1112131415161718,
        0x2122232425262728,
        0x3132333435363738,
    )


@pytest.mark.parametrize("value", [-1, FELT_BOUND])
def test_values_outside_four_limbs_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="four 64-bit limbs"):
        felt_to_limbs(value)


def test_a_limb_wider_than_64_bits_is_refused() -> None:
    with pytest.raises(ValueError, match="not a 64-bit value"):
        felt_from_limbs(0, 0, 0, 2**64)


@given(st.integers(min_value=0, max_value=2**64 - 1), st.none() | felts)
def test_cursor_round_trips(number: int, block_hash: int | None) -> None:
    cursor = Cursor(number, block_hash)
    wire = cursor_to_proto(cursor).SerializeToString()
    assert cursor_from_proto(stream_pb2.Cursor.FromString(wire)) == cursor


def test_cursor_hash_is_32_big_endian_bytes_and_empty_when_unknown() -> None:
    assert cursor_to_proto(Cursor(7, 0xAB)).unique_key == b"\x00" * 31 + b"\xab"
    assert cursor_to_proto(Cursor(7)).unique_key == b""


def test_a_cursor_hash_longer_than_a_felt_is_a_stream_error() -> None:
    with pytest.raises(StreamError, match="33 bytes"):
        cursor_from_proto(stream_pb2.Cursor(order_key=1, unique_key=b"\x01" * 33))


def test_filter_asks_for_each_followed_event_of_each_contract_and_nothing_else() -> None:
    flt = filter_pb2.Filter.FromString(build_filter(ADDRESSES))
    assert flt.header == filter_pb2.HEADER_FILTER_ON_DATA_OR_ON_NEW_BLOCK  # live: every block
    assert not (flt.transactions or flt.messages or flt.storage_diffs or flt.nonce_updates)
    pairs = [
        (felt_from_proto(f.address), tuple(felt_from_proto(k.value) for k in f.keys))
        for f in flt.events
    ]
    expected = [
        (address, (selector,))
        for address, kind in ADDRESSES.items()
        for selector in event_selectors(kind)
    ]
    assert pairs == expected
    assert (ROUTER, (SELECTORS["RebalanceRequested"],)) in pairs
    assert (RISK_ENGINE, (SELECTORS["MetricsUpdated"],)) in pairs
    assert [f.id for f in flt.events] == list(range(1, len(expected) + 1))
    for f in flt.events:
        assert f.HasField("include_receipt") and not f.include_receipt
        assert f.HasField("include_transaction") and not f.include_transaction
        assert not f.strict  # keys are a prefix: the selector, then anything
        assert f.transaction_status == filter_pb2.TRANSACTION_STATUS_FILTER_SUCCEEDED


def test_request_carries_cursor_finality_filter_and_heartbeat() -> None:
    request = stream_pb2.StreamDataRequest.FromString(
        build_request(
            Cursor(41, 0xBEEF), finality="finalized", filter_bytes=b"F", heartbeat_s=15
        ).SerializeToString()
    )
    assert cursor_from_proto(request.starting_cursor) == Cursor(41, 0xBEEF)
    assert request.finality == stream_pb2.DATA_FINALITY_FINALIZED
    assert list(request.filter) == [b"F"]
    assert request.heartbeat_interval.seconds == 15
    fresh = build_request(None, finality="accepted", filter_bytes=b"F", heartbeat_s=30)
    assert not fresh.HasField("starting_cursor")
    assert fresh.finality == stream_pb2.DATA_FINALITY_ACCEPTED


@pytest.mark.parametrize(
    ("finality", "heartbeat", "message"),
    [
        ("pending", 30, "unknown DNA finality"),
        ("accepted", 9, "9 s is outside 10 to 60 s"),
        ("accepted", 61, "61 s is outside 10 to 60 s"),
    ],
)
def test_request_refuses_pending_and_heartbeats_the_server_refuses(
    finality: str, heartbeat: int, message: str
) -> None:
    with pytest.raises(StreamError, match=message):
        build_request(None, finality=finality, filter_bytes=b"", heartbeat_s=heartbeat)


def dna_event(
    address: int, keys: list[int], data: list[int], tx: int, index: int
) -> data_pb2.Event:
    return data_pb2.Event(
        from_address=felt_to_proto(address),
        keys=[felt_to_proto(k) for k in keys],
        data=[felt_to_proto(d) for d in data],
        event_index=index,
        transaction_hash=felt_to_proto(tx),
        transaction_status=data_pb2.TRANSACTION_STATUS_SUCCEEDED,
        event_index_in_transaction=0,
    )


def dna_block(number: int, block_hash: int, events: list[data_pb2.Event]) -> bytes:
    block = data_pb2.Block(
        header=data_pb2.BlockHeader(block_number=number, block_hash=felt_to_proto(block_hash)),
        events=events,
    )
    return bytes(block.SerializeToString())


def test_block_events_decode_to_the_keepers_typed_events(event_log: EventLog) -> None:
    meta = EventMeta(12, 0xB12, 0x7001, 0, ROUTER)
    rebalance = RebalanceRequested(meta, epoch=4, requester=0xAB, by_owner=True)
    executed = AllocationExecuted(
        EventMeta(12, 0xB12, 0x7002, 1, ROUTER),
        epoch=4,
        fact_hash=0xFAC7,
        allocation=(5000, 5000),
        prover_kind="dev",
    )
    events = [
        dna_event(ROUTER, *encode(rebalance), tx=0x7001, index=0),
        dna_event(ROUTER, *encode(executed), tx=0x7002, index=1),
    ]
    block = decode_block(dna_block(12, 0xB12, events), Cursor(12, 0xB12))
    assert (block.number, block.hash) == (12, 0xB12)
    event_log.ingest([block], Cursor(12, 0xB12))
    assert [s.event for s in event_log.next_unprocessed()] == [rebalance, executed]


@given(
    index=st.integers(min_value=0, max_value=2**31),
    metrics=st.lists(st.integers(min_value=0, max_value=10_000), min_size=5, max_size=5),
    tx=st.integers(min_value=1, max_value=STARKNET_PRIME - 1),
    block_hash=st.integers(min_value=0, max_value=STARKNET_PRIME - 1),
)
def test_any_event_survives_the_wire_with_its_meta(
    index: int, metrics: list[int], tx: int, block_hash: int
) -> None:
    keys = [SELECTORS["MetricsUpdated"], 3]
    data = [*metrics, 4, 0x1234]
    raw = dna_block(9, block_hash, [dna_event(RISK_ENGINE, keys, data, tx=tx, index=index)])
    [event] = decode_block(raw, Cursor(9, block_hash)).events
    assert event.problem is None
    assert (event.keys, event.data) == (tuple(keys), tuple(data))
    assert event.meta == EventMeta(9, block_hash, tx, index, RISK_ENGINE)


def test_an_event_with_a_value_above_the_prime_is_a_problem_event_kept_as_text() -> None:
    raw = dna_block(5, 0xB5, [dna_event(ROUTER, [SELECTORS["KeeperUpdated"]], [STARKNET_PRIME],
                                        tx=0x99, index=2)])
    [event] = decode_block(raw, Cursor(5, 0xB5)).events
    assert event.problem is not None and "not below the prime" in event.problem
    assert event.raw_data == (hex(STARKNET_PRIME),)
    assert event.meta.event_index == 2


def test_an_event_without_transaction_hash_is_a_problem_event() -> None:
    raw = dna_block(5, 0xB5, [dna_event(ROUTER, [1], [2], tx=0, index=0)])
    [event] = decode_block(raw, Cursor(5, 0xB5)).events
    assert event.problem == "event without transaction hash"


def test_bytes_that_are_not_a_block_are_a_stream_error_naming_the_block() -> None:
    with pytest.raises(StreamError, match=r"block 8 as bytes that are not a starknet\.v2 Block"):
        decode_block(b"\xff\xff\xff", Cursor(8))


def test_a_header_that_disagrees_with_the_end_cursor_is_refused() -> None:
    with pytest.raises(StreamError, match="block headed 9 with end cursor 8"):
        decode_block(dna_block(9, 0xB9, []), Cursor(8, 0xB8))


def test_a_block_without_header_takes_the_cursor_of_its_message() -> None:
    raw = bytes(data_pb2.Block(events=[dna_event(ROUTER, [1], [], tx=5, index=0)])
                .SerializeToString())
    block = decode_block(raw, Cursor(8, 0xB8))
    assert (block.number, block.hash, len(block.events)) == (8, 0xB8, 1)


def test_data_message_blocks_one_filter_and_empty_matches() -> None:
    end = cursor_to_proto(Cursor(3, 0xB3))
    one = stream_pb2.Data(end_cursor=end, data=[dna_block(3, 0xB3, [])])
    assert [b.number for b in data_blocks(one)] == [3]
    assert data_blocks(stream_pb2.Data(end_cursor=end, data=[b""])) == []
    with pytest.raises(StreamError, match="2 filters' data"):
        data_blocks(stream_pb2.Data(end_cursor=end, data=[b"", b""]))


def test_status_head_prefers_current_head_then_last_ingested() -> None:
    both = stream_pb2.StatusResponse(
        current_head=cursor_to_proto(Cursor(10, 1)), last_ingested=cursor_to_proto(Cursor(9, 2))
    )
    assert status_head(both) == Cursor(10, 1)
    ingested = stream_pb2.StatusResponse(last_ingested=cursor_to_proto(Cursor(9, 2)))
    assert status_head(ingested) == Cursor(9, 2)
    assert status_head(stream_pb2.StatusResponse()) is None
