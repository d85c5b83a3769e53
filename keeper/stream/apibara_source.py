"""Apibara DNA v1alpha2 source (legacy: for a self-hosted apibara-starknet v1 server; the
hosted streams speak DNA v2, see ``dna_source``): the package's StreamService protobufs
over grpc.aio, with the keeper's own cursor (FACTS §6: apibara's IndexerRunner needs
MongoDB and sends invalidate and heartbeat messages down the data path, so it is not used).

- One request per connection: filter on both contracts and the event selectors we decode,
  ``finality`` from config, ``starting_cursor`` = the stored cursor (the stream resumes
  *after* it), or ``start_block - 1`` on a fresh store.
- ``data``: every block of the batch is decoded and ingested with the batch's
  ``end_cursor`` in one transaction. Pending data is skipped (the keeper never acts on it).
- ``invalidate``: everything after the invalidate cursor is rolled back (events, quarantine,
  hooks for the jobs they triggered) and the cursor moves back to it.
- ``heartbeat``: liveness only.
- A dropped connection reconnects from the stored cursor: at once when the connection
  had delivered messages, then (tenacity) with jittered exponential backoff while
  reconnecting keeps failing. No message at all (heartbeats included) for
  ``stall_deadline_s`` — whether connected or reconnecting — raises
  ``StreamStalledError`` (exit 75: systemd restarts the daemon).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from apibara.protocol.proto import stream_pb2, stream_pb2_grpc
from apibara.starknet.proto import filter_pb2, starknet_pb2, types_pb2
from google.protobuf.message import DecodeError as ProtobufDecodeError

from keeper.core.logs import get_logger
from keeper.stream.errors import StreamDisconnectedError, StreamError, StreamStalledError
from keeper.stream.eventlog import Block, Cursor, EventLog, RawEvent
from keeper.stream.events import ContractKind, EventMeta, event_selectors
from keeper.stream.reconnect import ReconnectingGrpcSource

FINALITY = {
    "pending": stream_pb2.DATA_STATUS_PENDING,
    "accepted": stream_pb2.DATA_STATUS_ACCEPTED,
    "finalized": stream_pb2.DATA_STATUS_FINALIZED,
}

_log = get_logger("keeper.stream.apibara")

ChannelFactory = Callable[[str], grpc.aio.Channel]
Progress = Callable[[str], None]

# Between failed reconnects: full jitter over a window doubling from 0.5 s up to 30 s, with
# a floor so that a dead server is never hammered; never past the stall deadline.


def felt_to_proto(value: int) -> Any:
    """An int as Apibara's FieldElement (four big-endian 64-bit limbs)."""
    mask = (1 << 64) - 1
    return types_pb2.FieldElement(
        lo_lo=(value >> 192) & mask,
        lo_hi=(value >> 128) & mask,
        hi_lo=(value >> 64) & mask,
        hi_hi=value & mask,
    )


def felt_from_proto(felt: Any) -> int:
    return (
        (int(felt.lo_lo) << 192) + (int(felt.lo_hi) << 128) + (int(felt.hi_lo) << 64)
        + int(felt.hi_hi)
    )


def build_filter(addresses: dict[int, ContractKind]) -> bytes:
    """Header of blocks with matches, plus every followed event of each contract."""
    flt = filter_pb2.Filter(header=filter_pb2.HeaderFilter(weak=True))
    for address, kind in addresses.items():
        for selector in event_selectors(kind):
            flt.events.append(
                filter_pb2.EventFilter(
                    from_address=felt_to_proto(address),
                    keys=[felt_to_proto(selector)],
                    include_transaction=True,
                    include_receipt=False,
                    include_reverted=False,
                )
            )
    return bytes(flt.SerializeToString())


def cursor_to_proto(cursor: Cursor) -> Any:
    unique = b"" if cursor.block_hash is None else cursor.block_hash.to_bytes(32, "big")
    return stream_pb2.Cursor(order_key=cursor.block_number, unique_key=unique)


def cursor_from_proto(cursor: Any) -> Cursor:
    unique = bytes(cursor.unique_key)
    return Cursor(int(cursor.order_key), int.from_bytes(unique, "big") if unique else None)


def decode_block(raw: bytes) -> Block:
    """One serialized starknet Block of a data batch into the ingest shape."""
    block = starknet_pb2.Block()
    try:
        block.ParseFromString(raw)
    except ProtobufDecodeError as exc:
        raise StreamError(
            f"Apibara sent a block that is not a DNA v1alpha2 Starknet block ({exc}); "
            "check that apibara_url points at an apibara-starknet v1 (v1alpha2) server"
        ) from exc
    if not block.HasField("header"):
        raise StreamError("Apibara sent a block without header although the filter asks for one")
    number = int(block.header.block_number)
    block_hash = felt_from_proto(block.header.block_hash)
    events = []
    for item in block.events:
        tx_hash = felt_from_proto(item.transaction.meta.hash)
        if tx_hash == 0:
            tx_hash = felt_from_proto(item.receipt.transaction_hash)
        event = item.event
        meta = EventMeta(
            block_number=number,
            block_hash=block_hash,
            tx_hash=tx_hash,
            event_index=int(event.index),
            from_address=felt_from_proto(event.from_address),
        )
        problem = None if tx_hash else "event without transaction hash"
        events.append(
            RawEvent(
                meta,
                tuple(felt_from_proto(k) for k in event.keys),
                tuple(felt_from_proto(d) for d in event.data),
                problem=problem,
            )
        )
    return Block(number, block_hash, tuple(events))


def _insecure_or_tls(url: str) -> grpc.aio.Channel:
    if url.startswith("https://"):
        return grpc.aio.secure_channel(url.removeprefix("https://"), grpc.ssl_channel_credentials())
    return grpc.aio.insecure_channel(url.removeprefix("http://"))


class ApibaraSource(ReconnectingGrpcSource):
    """Follows the chain through an Apibara DNA v1alpha2 stream into an ``EventLog``."""

    name = "apibara"

    def __init__(
        self,
        log: EventLog,
        *,
        url: str,
        addresses: dict[int, ContractKind],
        finality: str = "accepted",
        batch_size: int = 10,
        start_block: int = 0,
        stall_deadline_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        channel_factory: ChannelFactory = _insecure_or_tls,
        on_progress: Progress | None = None,
    ) -> None:
        if finality not in FINALITY:
            raise StreamError(f"unknown Apibara finality {finality!r}: use {sorted(FINALITY)}")
        self._log = log
        self._url = url
        self._filter = build_filter(addresses)
        self._finality = FINALITY[finality]
        self._batch_size = batch_size
        self._start_block = start_block
        self._stall_deadline_s = stall_deadline_s
        self._clock = clock
        self._sleep = sleep
        self._channel_factory = channel_factory
        self._on_progress = on_progress
        self._stream_id = 0
        self._last_message = clock()
        self._messages = 0  # received since start: tells a working connection from a failed one

    async def _stream_until_dropped(self) -> None:
        """One connection. Returns when one that delivered messages drops (the caller
        reconnects at once); raises when none came (the caller backs off)."""
        received = self._messages
        try:
            await self._stream_once()
        except (grpc.aio.AioRpcError, StreamDisconnectedError) as exc:
            if self._messages == received:
                raise
            self._disconnected(exc, retry_in_s=0.0)

    def _disconnected(
        self, exc: grpc.aio.AioRpcError | StreamDisconnectedError, *, retry_in_s: float
    ) -> None:
        detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
        _log.warning("stream.disconnected", url=self._url, error=detail, retry_in_s=retry_in_s)
        self._progress("disconnected")

    def _stalled(self) -> StreamStalledError:
        return StreamStalledError(
            f"no message from Apibara at {self._url} for {self._stall_deadline_s:g} s "
            "(not even a heartbeat): the stream is dead; check the server and its node; "
            "the keeper resumes from its stored cursor when restarted"
        )

    async def _stream_once(self) -> None:
        channel = self._channel_factory(self._url)
        try:
            call = stream_pb2_grpc.StreamStub(channel).StreamData()
            self._stream_id += 1
            cursor = self.starting_cursor()
            request = stream_pb2.StreamDataRequest(
                stream_id=self._stream_id,
                batch_size=self._batch_size,
                finality=self._finality,
                filter=self._filter,
            )
            if cursor is not None:
                request.starting_cursor.CopyFrom(cursor_to_proto(cursor))
            _log.info(
                "stream.connecting",
                url=self._url,
                after_block=None if cursor is None else cursor.block_number,
            )
            await call.write(request)
            while True:
                try:
                    response = await asyncio.wait_for(call.read(), timeout=self._remaining())
                except TimeoutError:
                    call.cancel()
                    raise self._stalled() from None
                if response is grpc.aio.EOF:
                    raise StreamDisconnectedError("Apibara closed the stream")
                self._last_message = self._clock()
                self._messages += 1
                self._handle(response)
        finally:
            await channel.close()

    def _handle(self, response: Any) -> None:
        kind = response.WhichOneof("message")
        if kind == "data":
            data = response.data
            if data.finality == stream_pb2.DATA_STATUS_PENDING:
                self._progress("pending")
                return
            blocks = [decode_block(bytes(raw)) for raw in data.data]
            end = cursor_from_proto(data.end_cursor)
            result = self._log.ingest(blocks, end)
            _log.info(
                "stream.batch",
                to_block=end.block_number,
                stored=result.stored,
                quarantined=result.quarantined,
                skipped=result.skipped,
            )
        elif kind == "invalidate":
            cursor = cursor_from_proto(response.invalidate.cursor)
            self._log.rollback_after(cursor.block_number)
        elif kind == "heartbeat":
            pass
        else:
            _log.warning("stream.unknown_message", kind=kind)
        self._progress(kind or "empty")
