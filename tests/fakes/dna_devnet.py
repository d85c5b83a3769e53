"""A DNA v2 server for end-to-end tests that serves a starknet-devnet's blocks as
``dna.v2.stream`` data (the keeper's own protos), the way apibara/dna serves a chain:

- the request's ``starknet.v2.Filter`` is applied (event filters: address and key prefix,
  succeeded transactions; the header on data, or on every new block as asked);
- the starting cursor is validated: past the node's head → ``OUT_OF_RANGE``; a block
  hash the node does not have at that height → ``INVALID_ARGUMENT`` "starting cursor …
  not found";
- each block is one ``Data`` message (finality accepted, production live) with the
  block's events in order (``event_index`` = position in the block);
- a block it sent that the node no longer has (``devnet_abortBlocks``) → ``Invalidate``
  with the newest block both still agree on;
- ``Heartbeat`` after the requested interval of silence; ``Status`` gives the node's
  head. With ``token``, calls need ``authorization: Bearer <token>``.

The node is polled every ``poll_s`` over JSON-RPC; devnet has no L1, so nothing is ever
finalized.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import httpx

from keeper.stream.dna_codec import (
    cursor_from_proto,
    cursor_to_proto,
    felt_from_proto,
    felt_to_proto,
)
from keeper.stream.dna_proto.dna.v2 import stream_pb2, stream_pb2_grpc
from keeper.stream.dna_proto.starknet.v2 import data_pb2, filter_pb2
from keeper.stream.eventlog import Cursor


@dataclass(frozen=True)
class _EventFilter:
    address: int | None
    keys: tuple[int | None, ...]

    def matches(self, address: int, keys: list[int]) -> bool:
        if self.address is not None and address != self.address:
            return False
        if len(keys) < len(self.keys):
            return False
        return all(want is None or want == got for want, got in zip(self.keys, keys, strict=False))


def _parse_filter(raw: bytes) -> tuple[int, list[_EventFilter]]:
    flt = filter_pb2.Filter.FromString(raw)
    events = [
        _EventFilter(
            felt_from_proto(f.address) if f.HasField("address") else None,
            tuple(felt_from_proto(k.value) if k.HasField("value") else None for k in f.keys),
        )
        for f in flt.events
    ]
    return int(flt.header), events


class _Node:
    def __init__(self, url: str) -> None:
        self._url = url
        self._http = httpx.AsyncClient(timeout=30)

    async def rpc(self, method: str, params: dict[str, Any] | list[Any]) -> Any:
        reply = (
            await self._http.post(
                self._url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
            )
        ).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def head(self) -> int:
        return int(await self.rpc("starknet_blockNumber", []))

    async def block_hash(self, number: int) -> int | None:
        try:
            block = await self.rpc(
                "starknet_getBlockWithTxHashes", {"block_id": {"block_number": number}}
            )
        except RuntimeError:
            return None
        return int(block["block_hash"], 16)

    async def block(self, number: int) -> Any:
        return await self.rpc(
            "starknet_getBlockWithReceipts", {"block_id": {"block_number": number}}
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def _block_message(
    block: Any, header_mode: int, filters: list[_EventFilter]
) -> bytes | None:
    """The starknet.v2 Block of the filter's matches (None: nothing to send)."""
    number = int(block["block_number"])
    block_hash = int(block["block_hash"], 16)
    out = data_pb2.Block()
    index = 0
    for item in block["transactions"]:
        receipt = item["receipt"]
        tx_hash = int(receipt["transaction_hash"], 16)
        succeeded = receipt.get("execution_status") == "SUCCEEDED"
        for position, event in enumerate(receipt.get("events", [])):
            address = int(event["from_address"], 16)
            keys = [int(k, 16) for k in event["keys"]]
            if succeeded and any(f.matches(address, keys) for f in filters):
                out.events.add(
                    from_address=felt_to_proto(address),
                    keys=[felt_to_proto(k) for k in keys],
                    data=[felt_to_proto(int(d, 16)) for d in event["data"]],
                    event_index=index,
                    transaction_hash=felt_to_proto(tx_hash),
                    transaction_status=data_pb2.TRANSACTION_STATUS_SUCCEEDED,
                    event_index_in_transaction=position,
                )
            index += 1
    wants_header = header_mode in (
        filter_pb2.HEADER_FILTER_ALWAYS,
        filter_pb2.HEADER_FILTER_ON_DATA_OR_ON_NEW_BLOCK,  # every block here is live
    )
    if not out.events and not wants_header:
        return None
    out.header.CopyFrom(
        data_pb2.BlockHeader(block_number=number, block_hash=felt_to_proto(block_hash))
    )
    return bytes(out.SerializeToString())


@dataclass
class _Servicer(stream_pb2_grpc.DnaStreamServicer):  # type: ignore[misc]
    node: _Node
    token: str | None
    poll_s: float
    requests: list[Any] = field(default_factory=list)
    invalidated: list[int] = field(default_factory=list)

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        if self.token is not None and metadata.get("authorization") != f"Bearer {self.token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or missing token")

    async def Status(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._authorize(context)
        head = await self.node.head()
        block_hash = await self.node.block_hash(head)
        return stream_pb2.StatusResponse(last_ingested=cursor_to_proto(Cursor(head, block_hash)))

    async def StreamData(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        await self._authorize(context)
        self.requests.append(request)
        [raw_filter] = request.filter
        header_mode, filters = _parse_filter(raw_filter)
        heartbeat_s = request.heartbeat_interval.seconds or 30
        seen: dict[int, int] = {}  # block number -> hash of what this stream went past
        next_block = 0
        if request.HasField("starting_cursor"):
            start = cursor_from_proto(request.starting_cursor)
            head = await self.node.head()
            if start.block_number > head:
                await context.abort(
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"cursor {start.block_number} is after the last ingested block {head}",
                )
            actual = await self.node.block_hash(start.block_number)
            if start.block_hash is not None and actual != start.block_hash:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"starting cursor {start.block_number}/{start.block_hash:#x} not found. "
                    f"canonical: {actual or 0:#x}, reorged: {start.block_hash:#x}",
                )
            if actual is not None:
                seen[start.block_number] = actual
            next_block = start.block_number + 1
        last_sent = time.monotonic()
        while True:
            common = await self._common_ancestor(seen)
            if common is not None:
                self.invalidated.append(common)
                for number in [n for n in seen if n > common]:
                    del seen[number]
                next_block = common + 1
                yield stream_pb2.StreamDataResponse(
                    invalidate=stream_pb2.Invalidate(
                        cursor=cursor_to_proto(Cursor(common, seen.get(common)))
                    )
                )
                last_sent = time.monotonic()
                continue
            head = await self.node.head()
            if next_block > head:
                if time.monotonic() - last_sent >= heartbeat_s:
                    yield stream_pb2.StreamDataResponse(heartbeat=stream_pb2.Heartbeat())
                    last_sent = time.monotonic()
                await asyncio.sleep(self.poll_s)
                continue
            block = await self.node.block(next_block)
            block_hash = int(block["block_hash"], 16)
            seen[next_block] = block_hash
            raw = _block_message(block, header_mode, filters)
            if raw is not None:
                message = stream_pb2.Data(
                    end_cursor=cursor_to_proto(Cursor(next_block, block_hash)),
                    finality=stream_pb2.DATA_FINALITY_ACCEPTED,
                    data=[raw],
                    production=stream_pb2.DATA_PRODUCTION_LIVE,
                )
                if next_block:
                    message.cursor.CopyFrom(cursor_to_proto(Cursor(next_block - 1)))
                yield stream_pb2.StreamDataResponse(data=message)
                last_sent = time.monotonic()
            next_block += 1

    async def _common_ancestor(self, seen: dict[int, int]) -> int | None:
        """None when the newest block this stream went past is still the node's; else the
        newest block both agree on (a reorg)."""
        if not seen:
            return None
        newest = max(seen)
        if await self.node.block_hash(newest) == seen[newest]:
            return None
        for number in sorted(seen, reverse=True):
            if await self.node.block_hash(number) == seen[number]:
                return number
        return min(seen) - 1


class DevnetDnaServer:
    def __init__(self, node_url: str, *, token: str | None = None, poll_s: float = 0.2) -> None:
        self._node = _Node(node_url)
        self.servicer = _Servicer(self._node, token, poll_s)
        self._server = grpc.aio.server()
        stream_pb2_grpc.add_DnaStreamServicer_to_server(self.servicer, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> DevnetDnaServer:
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.stop(grace=None)
        await self._node.aclose()
