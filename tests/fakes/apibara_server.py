"""A local Apibara DNA v1alpha2 server for tests, built on the apibara package's own protobufs.

Each connection (StreamData call) plays the next script: a list of steps — ``Send`` a
response, ``Drop`` the connection (UNAVAILABLE), ``Stall`` (keep it open, send nothing),
``End`` (close the stream normally); after its last step a script keeps the
connection open. When the scripts run out, new connections stall. Every
first request of a connection is recorded, so tests can assert the client resumed from its
stored cursor with the right filter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from apibara.protocol.proto import stream_pb2, stream_pb2_grpc
from apibara.starknet.proto import starknet_pb2

from keeper.stream.apibara_source import felt_to_proto


@dataclass(frozen=True)
class Send:
    response: Any


@dataclass(frozen=True)
class Drop:
    pass


@dataclass(frozen=True)
class Stall:
    pass


@dataclass(frozen=True)
class End:
    pass


Step = Send | Drop | Stall | End


@dataclass(frozen=True)
class FakeEvent:
    from_address: int
    keys: Sequence[int]
    data: Sequence[int]
    tx_hash: int
    index: int


def block_bytes(number: int, block_hash: int, events: Sequence[FakeEvent] = ()) -> bytes:
    block = starknet_pb2.Block(
        status=starknet_pb2.BLOCK_STATUS_ACCEPTED_ON_L2,
        header=starknet_pb2.BlockHeader(
            block_number=number, block_hash=felt_to_proto(block_hash)
        ),
    )
    for ev in events:
        item = block.events.add()
        item.transaction.meta.hash.CopyFrom(felt_to_proto(ev.tx_hash))
        item.event.from_address.CopyFrom(felt_to_proto(ev.from_address))
        item.event.keys.extend(felt_to_proto(k) for k in ev.keys)
        item.event.data.extend(felt_to_proto(d) for d in ev.data)
        item.event.index = ev.index
    return bytes(block.SerializeToString())


def cursor(number: int, block_hash: int | None = None) -> Any:
    unique = b"" if block_hash is None else block_hash.to_bytes(32, "big")
    return stream_pb2.Cursor(order_key=number, unique_key=unique)


def data(
    blocks: Sequence[bytes],
    end: Any,
    *,
    start: Any | None = None,
    finality: int = stream_pb2.DATA_STATUS_ACCEPTED,
) -> Send:
    msg = stream_pb2.Data(end_cursor=end, finality=finality, data=list(blocks))
    if start is not None:
        msg.cursor.CopyFrom(start)
    return Send(stream_pb2.StreamDataResponse(stream_id=1, data=msg))


def invalidate(number: int, block_hash: int | None = None) -> Send:
    return Send(
        stream_pb2.StreamDataResponse(
            stream_id=1, invalidate=stream_pb2.Invalidate(cursor=cursor(number, block_hash))
        )
    )


def heartbeat() -> Send:
    return Send(stream_pb2.StreamDataResponse(stream_id=1, heartbeat=stream_pb2.Heartbeat()))


@dataclass
class _Servicer(stream_pb2_grpc.StreamServicer):  # type: ignore[misc]
    scripts: list[list[Step]]
    requests: list[Any] = field(default_factory=list)
    connections: int = 0

    async def StreamData(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        first = await request_iterator.__anext__()
        self.requests.append(first)
        n = self.connections
        script = self.scripts[n] if n < len(self.scripts) else [Stall()]
        self.connections += 1
        for step in script:
            if isinstance(step, Send):
                yield step.response
            elif isinstance(step, Drop):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped by the test")
            elif isinstance(step, Stall):
                await asyncio.Event().wait()  # until the client cancels or the server stops
            else:
                return
        await asyncio.Event().wait()  # a script that does not End keeps the stream open


class FakeApibaraServer:
    def __init__(self, scripts: list[list[Step]]) -> None:
        self.servicer = _Servicer(scripts)
        self._server = grpc.aio.server()
        stream_pb2_grpc.add_StreamServicer_to_server(self.servicer, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.url = f"127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Any]:
        return self.servicer.requests

    async def __aenter__(self) -> FakeApibaraServer:
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.stop(grace=None)
