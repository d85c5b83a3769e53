"""A local Apibara DNA v2 server for tests (``dna.v2.stream.DnaStream``), built from the
keeper's own generated protos, scripted per connection.

Each StreamData call plays the next script: a list of steps — ``Send`` a response,
``Fail`` with a gRPC status (e.g. ``INVALID_ARGUMENT`` "starting cursor … not found"),
``Drop`` the connection (UNAVAILABLE), ``Stall`` (keep it open, send nothing), ``End``
(close the stream normally); after its last step a script keeps the stream open. When the
scripts run out, new calls stall. A ``token`` makes every call without
``authorization: Bearer <token>`` fail UNAUTHENTICATED. Requests and their metadata are
recorded. ``Status`` answers ``head`` / ``finalized``.

``CuttingProxy`` sits in front of it and cuts its first connection after a number of
bytes from the server: a connection dropped in the middle of a message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from keeper.stream.dna_codec import cursor_to_proto, felt_to_proto
from keeper.stream.dna_proto.dna.v2 import stream_pb2, stream_pb2_grpc
from keeper.stream.dna_proto.starknet.v2 import data_pb2
from keeper.stream.eventlog import Cursor


@dataclass(frozen=True)
class Send:
    response: Any


@dataclass(frozen=True)
class Fail:
    code: grpc.StatusCode
    details: str


@dataclass(frozen=True)
class Drop:
    pass


@dataclass(frozen=True)
class Stall:
    pass


@dataclass(frozen=True)
class End:
    pass


Step = Send | Fail | Drop | Stall | End
# A connection's script, or a function of its request giving one (e.g. a replay of the
# blocks after the request's starting cursor).
Script = list[Step] | Callable[[Any], list[Step]]


@dataclass(frozen=True)
class FakeEvent:
    from_address: int
    keys: Sequence[int]
    data: Sequence[int]
    tx_hash: int
    index: int


def block_bytes(number: int, block_hash: int, events: Sequence[FakeEvent] = ()) -> bytes:
    block = data_pb2.Block(
        header=data_pb2.BlockHeader(block_number=number, block_hash=felt_to_proto(block_hash))
    )
    for ev in events:
        block.events.add(
            from_address=felt_to_proto(ev.from_address),
            keys=[felt_to_proto(k) for k in ev.keys],
            data=[felt_to_proto(d) for d in ev.data],
            event_index=ev.index,
            transaction_hash=felt_to_proto(ev.tx_hash),
            transaction_status=data_pb2.TRANSACTION_STATUS_SUCCEEDED,
        )
    return bytes(block.SerializeToString())


def data(
    raw: bytes,
    number: int,
    block_hash: int | None,
    *,
    finality: int = stream_pb2.DATA_FINALITY_ACCEPTED,
    production: int = stream_pb2.DATA_PRODUCTION_LIVE,
) -> Send:
    """One Data message: one block (``raw``, for the one filter) ending at (number, hash)."""
    msg = stream_pb2.Data(
        end_cursor=cursor_to_proto(Cursor(number, block_hash)),
        finality=finality,
        data=[raw],
        production=production,
    )
    if number > 0:
        msg.cursor.CopyFrom(cursor_to_proto(Cursor(number - 1)))
    return Send(stream_pb2.StreamDataResponse(data=msg))


def invalidate(number: int, block_hash: int | None = None) -> Send:
    cursor = cursor_to_proto(Cursor(number, block_hash))
    return Send(stream_pb2.StreamDataResponse(invalidate=stream_pb2.Invalidate(cursor=cursor)))


def finalize(number: int, block_hash: int | None = None) -> Send:
    cursor = cursor_to_proto(Cursor(number, block_hash))
    return Send(stream_pb2.StreamDataResponse(finalize=stream_pb2.Finalize(cursor=cursor)))


def heartbeat() -> Send:
    return Send(stream_pb2.StreamDataResponse(heartbeat=stream_pb2.Heartbeat()))


def system_message(*, stdout: str | None = None, stderr: str | None = None) -> Send:
    message = stream_pb2.SystemMessage(stdout=stdout) if stdout is not None else (
        stream_pb2.SystemMessage(stderr=stderr)
    )
    return Send(stream_pb2.StreamDataResponse(system_message=message))


def cursor_not_found(number: int) -> Fail:
    """What apibara/dna answers for a starting cursor whose block was reorged away."""
    return Fail(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"starting cursor {number}/0xdead not found. canonical: 0xbeef, reorged: 0xdead",
    )


def out_of_range(number: int, head: int) -> Fail:
    return Fail(
        grpc.StatusCode.OUT_OF_RANGE,
        f"cursor {number} is after the last ingested block {head}",
    )


@dataclass
class _Servicer(stream_pb2_grpc.DnaStreamServicer):  # type: ignore[misc]
    scripts: list[Script]
    token: str | None = None
    head: Cursor | None = None
    finalized: Cursor | None = None
    requests: list[Any] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    connections: int = 0
    status_calls: int = 0
    _status_seen: asyncio.Condition | None = None

    async def status_calls_reach(self, count: int) -> None:
        """Returns once ``count`` Status calls arrived."""
        if self._status_seen is None:
            self._status_seen = asyncio.Condition()
        async with self._status_seen:
            await self._status_seen.wait_for(lambda: self.status_calls >= count)

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ())}
        self.metadata.append(metadata)
        if self.token is not None and metadata.get("authorization") != f"Bearer {self.token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or missing token")

    async def StreamData(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        self.requests.append(request)
        await self._authorize(context)
        n = self.connections
        script = self.scripts[n] if n < len(self.scripts) else [Stall()]
        self.connections += 1
        for step in script(request) if callable(script) else script:
            if isinstance(step, Send):
                yield step.response
            elif isinstance(step, Fail):
                await context.abort(step.code, step.details)
            elif isinstance(step, Drop):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped by the test")
            elif isinstance(step, Stall):
                await asyncio.Event().wait()  # until the client cancels or the server stops
            else:
                return
        await asyncio.Event().wait()  # a script that does not End keeps the stream open

    async def Status(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._authorize(context)
        self.status_calls += 1
        if self._status_seen is not None:
            async with self._status_seen:
                self._status_seen.notify_all()
        response = stream_pb2.StatusResponse()
        if self.head is not None:
            response.last_ingested.CopyFrom(cursor_to_proto(self.head))
        if self.finalized is not None:
            response.finalized.CopyFrom(cursor_to_proto(self.finalized))
        return response


class FakeDnaServer:
    def __init__(
        self,
        scripts: list[Script],
        *,
        token: str | None = None,
        head: Cursor | None = None,
        finalized: Cursor | None = None,
    ) -> None:
        self.servicer = _Servicer(scripts, token=token, head=head, finalized=finalized)
        self._server = grpc.aio.server()
        stream_pb2_grpc.add_DnaStreamServicer_to_server(self.servicer, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Any]:
        return self.servicer.requests

    @property
    def metadata(self) -> list[dict[str, str]]:
        return self.servicer.metadata

    async def __aenter__(self) -> FakeDnaServer:
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.stop(grace=None)


class CuttingProxy:
    """TCP proxy to ``target_port``; its first connection is closed (both ways) once
    ``cut_after`` bytes came from the server — mid-message when a big one is on its way."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self._target_port = target_port
        self._cut_after = cut_after
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.cut = asyncio.Event()
        self.url = ""

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        limit = self._cut_after if self.connections == 1 else None
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        to_server = asyncio.create_task(self._pipe(reader, up_writer, None))
        to_client = asyncio.create_task(self._pipe(up_reader, writer, limit))
        self._tasks |= {to_server, to_client}
        try:
            await asyncio.wait({to_server, to_client}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (to_server, to_client):
                task.cancel()
            for w in (writer, up_writer):
                w.transport.abort()  # a cut, not a polite close
            self._tasks -= {to_server, to_client}

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: int | None
    ) -> None:
        sent = 0
        while True:
            chunk = await src.read(4096)
            if not chunk:
                return
            if limit is not None and sent + len(chunk) >= limit:
                dst.write(chunk[: limit - sent])
                await dst.drain()
                self.cut.set()
                return
            dst.write(chunk)
            await dst.drain()
            sent += len(chunk)
