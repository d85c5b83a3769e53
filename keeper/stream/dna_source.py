"""Apibara DNA v2 source: ``dna.v2.stream.DnaStream/StreamData`` over grpc.aio, with the
keeper's own cursor (the protocol of today's hosted Starknet streams; the v1alpha2 source
in ``apibara_source`` is kept for self-hosted v1 servers).

- One request per connection: a ``starknet.v2`` filter on both contracts and the event
  selectors we decode, ``finality`` accepted or finalized (pending is never acted on),
  ``heartbeat_interval`` 10-60 s, ``starting_cursor`` = the stored cursor (the stream
  resumes *after* it), or ``start_block - 1`` on a fresh store.
- ``data`` (one block): decoded and ingested with its ``end_cursor`` in one store
  transaction. Finalized data also moves the finalized cursor.
- ``invalidate``: everything after its cursor is rolled back (events, quarantine, the
  jobs they triggered, through the event log's hooks) and the cursor moves back to it.
- ``finalize``: the finalized cursor is recorded; no rollback below it is accepted.
- ``heartbeat``: liveness; ``system_message``: logged.
- Errors: ``UNAUTHENTICATED`` / ``PERMISSION_DENIED`` end the keeper with exit 78 (a token
  problem, not an outage: no restart loop). ``INVALID_ARGUMENT`` "starting cursor … not
  found" (the stored block was reorged away while disconnected): roll back to the last
  finalized cursor and resume from it, nothing counted twice. ``OUT_OF_RANGE`` (the stored
  cursor is past the server's head): wait and retry. Any other failure reconnects like the
  v1 source: at once after a connection that delivered messages, then (tenacity) with
  jittered exponential backoff. No message at all (heartbeats included) for
  ``stall_deadline_s`` raises ``StreamStalledError`` (exit 75).
- Auth: gRPC metadata ``authorization: Bearer <token>`` (the ``dna_token`` secret); TLS for
  https URLs, plaintext only for http. The token is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc
import grpc.aio

from keeper.core.errors import EX_CONFIG
from keeper.core.logs import get_logger
from keeper.stream.dna_codec import (
    BACKFILL,
    FINALIZED,
    LIVE,
    PENDING,
    build_filter,
    build_request,
    cursor_from_proto,
    data_blocks,
    status_head,
)
from keeper.stream.dna_proto.dna.v2 import stream_pb2, stream_pb2_grpc
from keeper.stream.errors import (
    ReorgTooDeepError,
    StreamDisconnectedError,
    StreamError,
    StreamStalledError,
)
from keeper.stream.eventlog import Block, Cursor, EventLog, StreamPosition
from keeper.stream.events import ContractKind
from keeper.stream.reconnect import ReconnectingGrpcSource

_log = get_logger("keeper.stream.dna")

Progress = Callable[[str], None]

# Blocks of a busy contract can be large; the gRPC default (4 MiB) is not a protocol limit.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
STATUS_TIMEOUT_S = 10.0
# Data messages (one block each) already received are ingested together, up to this many
# blocks per store transaction: a backfill is not one fsync per block. While backfilling,
# the next block is awaited this long to join the batch (live blocks never wait).
MAX_BLOCKS_PER_INGEST = 256
BACKFILL_COALESCE_S = 0.05
READ_AHEAD_MESSAGES = 1024
# Between failed reconnects (and OUT_OF_RANGE retries): full jitter over a window doubling
# from 0.5 s up to 30 s, with a floor; never past the stall deadline.
_AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


class DnaAuthError(StreamError):
    """The DNA server refused the token: fix the credential, restarting will not help."""

    code = "stream_unauthorized"
    exit_code = EX_CONFIG


class DnaRequestRefusedError(StreamError):
    """The DNA server refused the request itself (not a transient failure)."""

    code = "stream_request_refused"
    exit_code = EX_CONFIG


@dataclass(frozen=True)
class DnaEndpoint:
    """Where the stream is: ``target`` for gRPC (host:port) and whether TLS is used."""

    url: str
    target: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> DnaEndpoint:
        """An ``https://host[:port]`` (TLS, port 443) or ``http://host[:port]`` URL."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise StreamError(f"stream.dna_url {url!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StreamError(
                f"stream.dna_url {url!r} must be https://host[:port] (TLS) or "
                "http://host[:port] (plaintext, for a local server)"
            )
        if parts.username or parts.password or parts.query or parts.path not in ("", "/"):
            raise StreamError(
                f"stream.dna_url must be scheme://host[:port] only (no path, query or "
                f"credentials; the token is the dna_token secret): got {parts.scheme}://…"
            )
        tls = parts.scheme == "https"
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        return cls(url=url, target=f"{host}:{port or (443 if tls else 80)}", tls=tls)

    @property
    def display(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.target}"


def open_channel(endpoint: DnaEndpoint) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if endpoint.tls:
        return grpc.aio.secure_channel(
            endpoint.target, grpc.ssl_channel_credentials(), options=options
        )
    return grpc.aio.insecure_channel(endpoint.target, options=options)


ChannelFactory = Callable[[DnaEndpoint], grpc.aio.Channel]


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return () if token is None else (("authorization", f"Bearer {token}"),)


def _scrub(text: str, token: str | None) -> str:
    """A server's error detail, without our token should it echo it."""
    return text.replace(token, "<dna_token>") if token else text


async def fetch_status(
    endpoint: DnaEndpoint,
    token: str | None,
    *,
    timeout_s: float = STATUS_TIMEOUT_S,
    channel_factory: ChannelFactory = open_channel,
) -> tuple[Cursor | None, Cursor | None]:
    """(head, finalized) from the server's ``Status``; raises ``grpc.aio.AioRpcError``."""
    channel = channel_factory(endpoint)
    try:
        stub = stream_pb2_grpc.DnaStreamStub(channel)
        status = await stub.Status(
            stream_pb2.StatusRequest(), metadata=_metadata(token), timeout=timeout_s
        )
    finally:
        await channel.close()
    finalized = cursor_from_proto(status.finalized) if status.HasField("finalized") else None
    return status_head(status), finalized


def _is_data(item: Any) -> bool:
    return isinstance(item, stream_pb2.StreamDataResponse) and item.HasField("data")


class DnaSource(ReconnectingGrpcSource):
    """Follows the chain through an Apibara DNA v2 stream into an ``EventLog``."""

    name = "dna"

    def __init__(
        self,
        log: EventLog,
        *,
        url: str,
        addresses: dict[int, ContractKind],
        token: str | None = None,
        finality: str = "accepted",
        heartbeat_interval_s: int = 30,
        start_block: int = 0,
        stall_deadline_s: float = 300.0,
        status_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        channel_factory: ChannelFactory = open_channel,
        on_progress: Progress | None = None,
    ) -> None:
        self._log = log
        self._endpoint = DnaEndpoint.parse(url)
        self._token = token
        self._filter = build_filter(addresses)
        self._finality = finality
        self._heartbeat_s = heartbeat_interval_s
        # A finality or heartbeat the server would refuse fails here, not at each connect.
        build_request(None, finality=finality, filter_bytes=b"", heartbeat_s=heartbeat_interval_s)
        self._start_block = start_block
        self._stall_deadline_s = stall_deadline_s
        self._status_interval_s = status_interval_s
        self._clock = clock
        self._sleep = sleep
        self._channel_factory = channel_factory
        self._on_progress = on_progress
        self._last_message = clock()
        self._messages = 0  # received since start: tells a working connection from a failed one
        self._out_of_range: str | None = None  # the server's words while it is behind us

    @property
    def position(self) -> StreamPosition:
        return self._log.position

    @property
    def url(self) -> str:
        return self._endpoint.display

    async def _stream_until_dropped(self) -> None:
        """One connection. Returns when one that delivered messages drops, or after a
        rewind (the caller reconnects at once); raises when none came (the caller backs
        off) and on fatal errors."""
        received = self._messages
        try:
            await self._stream_once()
        except grpc.aio.AioRpcError as exc:
            if self._cursor_not_found(exc):
                self._rewind(_scrub(exc.details() or "", self._token))
                return
            if self._messages == received:
                raise
            self._disconnected(exc, retry_in_s=0.0)
        except StreamDisconnectedError as exc:
            if self._messages == received:
                raise
            self._disconnected(exc, retry_in_s=0.0)

    def _cursor_not_found(self, exc: grpc.aio.AioRpcError) -> bool:
        """True when the server does not know the stored cursor's block (reorged away);
        raises what must not be retried; notes OUT_OF_RANGE; the rest reconnects."""
        code = exc.code()
        detail = _scrub(exc.details() or "", self._token)
        if code in _AUTH_CODES:
            held = "the dna_token secret" if self._token else "no dna_token secret"
            raise DnaAuthError(
                f"the DNA server at {self.url} refused the stream ({code.name}: {detail}) "
                f"with {held}: put a valid token in the file KEEPER_DNA_TOKEN_FILE names "
                "(or the systemd credential 'dna_token') and restart"
            ) from None
        if code == grpc.StatusCode.OUT_OF_RANGE:
            self._out_of_range = detail
            return False
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            if "starting cursor" in detail and "not found" in detail:
                return True
            if "before the first ingested block" in detail:
                raise DnaRequestRefusedError(
                    f"the DNA server at {self.url} does not serve the blocks the keeper "
                    f"starts from ({detail}): raise stream.start_block to its first block "
                    "or use a server with the full history"
                ) from None
            raise DnaRequestRefusedError(
                f"the DNA server at {self.url} refused the keeper's request ({detail}): "
                "check that stream.dna_url points at a Starknet DNA v2 stream"
            ) from None
        self._out_of_range = None
        return False

    def _rewind(self, detail: str) -> None:
        """The stored block left the chain while we were away: back to the last finalized
        block (or before start_block), everything above it rolled back and re-ingested."""
        stored = self._log.cursor()
        finalized = self._log.finalized()
        # Without a finalized block: back to where a fresh store starts (block 0 itself
        # when start_block is 0: a cursor cannot point before genesis).
        target = finalized or Cursor(max(self._start_block - 1, 0))
        if stored is not None and stored.block_number <= target.block_number:
            raise ReorgTooDeepError(
                f"the DNA server at {self.url} does not know block {stored.block_number}, "
                f"the last finalized one ({detail}): the store and the server disagree on "
                "finalized history; re-sync a fresh store from stream.start_block"
            )
        _log.warning(
            "stream.cursor_not_found",
            url=self.url,
            stored_block=None if stored is None else stored.block_number,
            rewind_to=target.block_number,
            detail=detail,
        )
        self._log.rollback_after(target.block_number, to=target if finalized else None)
        self._last_message = self._clock()  # the server answered: it is alive
        self._progress("rewound")

    def _disconnected(
        self, exc: grpc.aio.AioRpcError | StreamDisconnectedError, *, retry_in_s: float
    ) -> None:
        if isinstance(exc, grpc.aio.AioRpcError):
            detail = f"{exc.code().name}: {_scrub(exc.details() or '', self._token)}"
        else:
            detail = str(exc)
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.OUT_OF_RANGE:
            _log.warning(
                "stream.server_behind", url=self.url, detail=detail, retry_in_s=retry_in_s
            )
            self._progress("server_behind")
            return
        _log.warning("stream.disconnected", url=self.url, error=detail, retry_in_s=retry_in_s)
        self._progress("disconnected")

    def _stalled(self) -> StreamStalledError:
        if self._out_of_range is not None:
            return StreamStalledError(
                f"the DNA server at {self.url} has been behind the keeper's stored cursor "
                f"for {self._stall_deadline_s:g} s ({self._out_of_range}): check that it "
                "follows the same network as the store, or that it is catching up"
            )
        return StreamStalledError(
            f"no message from the DNA server at {self.url} for {self._stall_deadline_s:g} s "
            "(not even a heartbeat): the stream is dead; check the server; the keeper "
            "resumes from its stored cursor when restarted"
        )

    async def _stream_once(self) -> None:
        channel = self._channel_factory(self._endpoint)
        watcher: asyncio.Task[None] | None = None
        reader: asyncio.Task[None] | None = None
        inbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=READ_AHEAD_MESSAGES)
        try:
            stub = stream_pb2_grpc.DnaStreamStub(channel)
            cursor = self.starting_cursor()
            request = build_request(
                cursor,
                finality=self._finality,
                filter_bytes=self._filter,
                heartbeat_s=self._heartbeat_s,
            )
            _log.info(
                "stream.connecting",
                url=self.url,
                after_block=None if cursor is None else cursor.block_number,
                finality=self._finality,
            )
            call = stub.StreamData(request, metadata=_metadata(self._token))
            watcher = asyncio.create_task(self._watch_status(stub), name="dna-status")
            reader = asyncio.create_task(self._read_into(call, inbox), name="dna-read")
            pending: Any = None  # an item taken from the inbox but not handled yet
            while True:
                if pending is not None:
                    response, pending = self._take(pending), None
                else:
                    response = await self._next(inbox, call)
                if response.WhichOneof("message") != "data":
                    self._handle(response)
                    continue
                batch = [response]  # and the data messages already waiting behind it
                while len(batch) < MAX_BLOCKS_PER_INGEST:
                    if not inbox.empty():
                        item = inbox.get_nowait()
                    elif batch[-1].data.production == BACKFILL:
                        try:
                            item = await asyncio.wait_for(inbox.get(), BACKFILL_COALESCE_S)
                        except TimeoutError:
                            break
                    else:
                        break
                    if not _is_data(item):
                        pending = item  # handled after the batch (an error too)
                        break
                    batch.append(self._take(item))
                self._on_data(batch)
        finally:
            for task in (watcher, reader):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await channel.close()

    async def _read_into(self, call: Any, inbox: asyncio.Queue[Any]) -> None:
        """Every message of the call into ``inbox``, then how it ended (EOF or the error)."""
        try:
            while True:
                response = await call.read()
                await inbox.put(response)
                if response is grpc.aio.EOF:
                    return
        except grpc.aio.AioRpcError as exc:
            await inbox.put(exc)

    async def _next(self, inbox: asyncio.Queue[Any], call: Any) -> Any:
        """The next message; raises how the stream ended, or stalls at the deadline."""
        try:
            item = await asyncio.wait_for(inbox.get(), timeout=self._remaining())
        except TimeoutError:
            call.cancel()
            raise self._stalled() from None
        return self._take(item)

    def _take(self, item: Any) -> Any:
        if isinstance(item, grpc.aio.AioRpcError):
            raise item
        if item is grpc.aio.EOF:
            raise StreamDisconnectedError("the DNA server closed the stream")
        self._last_message = self._clock()
        self._messages += 1
        self._out_of_range = None
        return item

    async def _watch_status(self, stub: Any) -> None:
        """The server's head (and finality) for /healthz and /metrics, while connected.
        Best effort: the stream itself is what liveness and the stall deadline watch."""
        while True:
            try:
                status = await stub.Status(
                    stream_pb2.StatusRequest(),
                    metadata=_metadata(self._token),
                    timeout=STATUS_TIMEOUT_S,
                )
                head = status_head(status)
                if head is not None:  # the server's word: it may also move back (reorg)
                    self._log.position.head = head
            except (grpc.aio.AioRpcError, StreamError) as exc:
                _log.debug("stream.status_failed", url=self.url, error=type(exc).__name__)
            await asyncio.sleep(self._status_interval_s)

    def _note_head(self, head: Cursor) -> None:
        known = self._log.position.head
        if known is None or head.block_number >= known.block_number:
            self._log.position.head = head

    def _handle(self, response: Any) -> None:
        kind = response.WhichOneof("message")
        if kind == "data":
            self._on_data(response.data)
        elif kind == "invalidate":
            cursor = cursor_from_proto(response.invalidate.cursor)
            removed = self._log.rollback_after(cursor.block_number, to=cursor)
            _log.warning(
                "stream.invalidate", after_block=cursor.block_number, events_removed=removed
            )
        elif kind == "finalize":
            cursor = cursor_from_proto(response.finalize.cursor)
            if self._log.record_finalized(cursor):
                _log.info("stream.finalized", block=cursor.block_number)
        elif kind == "heartbeat":
            pass
        elif kind == "data":  # only when handed alone
            self._on_data([response])
            return
        elif kind == "system_message":
            message = response.system_message
            stream = message.WhichOneof("output")
            text = _scrub(getattr(message, stream) if stream else "", self._token)
            log = _log.warning if stream == "stderr" else _log.info
            log("stream.server_message", url=self.url, output=stream, text=text[:1000])
        else:
            _log.warning("stream.unknown_message", kind=kind)
        self._progress(kind or "empty")

    def _on_data(self, responses: list[Any]) -> None:
        """Consecutive data messages: their blocks and the last end cursor in one store
        transaction (all decoded first: a block that does not decode stores nothing)."""
        blocks: list[Block] = []
        end: Cursor | None = None
        finalized: Cursor | None = None
        for handled, response in enumerate(responses):
            data = response.data
            if data.finality == PENDING:  # never asked for; never acted on
                continue
            try:
                decoded = data_blocks(data)
            except StreamError:
                if handled:  # the whole blocks before it are kept
                    self._on_data(responses[:handled])
                raise
            end = cursor_from_proto(data.end_cursor)
            blocks += decoded
            if data.finality == FINALIZED:
                finalized = end
            if data.production == LIVE:  # a live block is the server's head
                self._note_head(end)
        if end is not None:
            result = self._log.ingest(blocks, end, finalized=finalized)
            if result.stored or result.quarantined:
                _log.info(
                    "stream.blocks",
                    to_block=end.block_number,
                    blocks=len(responses),
                    stored=result.stored,
                    quarantined=result.quarantined,
                    skipped=result.skipped,
                )
        for _ in responses:
            self._progress("data")
