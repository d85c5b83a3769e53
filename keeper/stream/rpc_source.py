"""Starknet JSON-RPC source: ``starknet_getEvents`` backfill from ``start_block``, then
polling the head. Needs a node speaking RPC 0.8+ (address lists in the event filter; the
keeper is tested against starknet-devnet 0.8.2, RPC 0.10).

Each poll:
1. Reorg check: the hash of the cursor block is compared with the node's. A block hash
   commits to all its ancestors, so one comparison covers every block below. On a
   mismatch the stored block hashes are walked back (newest first) to the newest one the
   node still has: everything after it is rolled back like an Apibara invalidate.
2. Range: from the block after the cursor (or ``start_block``) up to
   ``head - confirmation_depth`` (``starknet_blockNumber`` is the latest *accepted*
   block, so pending/pre-confirmed blocks are never read), at most ``_MAX_RANGE`` blocks
   per step so a long backfill commits as it goes.
3. The range end's hash is read before and after paging through ``starknet_getEvents``
   (``chunk_size`` per page, continuation tokens); if it changed, a reorg raced the read
   and the range is discarded and re-read next poll. Otherwise events + cursor (the range
   end and its hash) are ingested in one transaction.

With a WebSocket URL (``stream.ws_url``), ``starknet_subscribeNewHeads`` notifications
wake the loop as soon as a block lands; the poll stays the one path that reads blocks
(notifications carry no guarantee), and the poll interval remains the fallback when the
socket is down. Only the URL's scheme://host[:port] is ever logged: providers put API
keys in the path or query, of this URL and of ``chain.rpc_url`` alike.

Failures of a poll (node down, 5xx, timeouts) are retried (tenacity) with jittered
exponential backoff; no successful poll for ``stall_deadline_s`` raises
``StreamStalledError`` (exit 75). A node that rejects the filter itself (page size or key
count over its limits) is a configuration error and raises ``StreamError`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    wait_random_exponential,
)
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

from keeper.core.logs import display_url, get_logger, hide_urls
from keeper.stream.errors import (
    DecodeError,
    ReorgTooDeepError,
    StreamDisconnectedError,
    StreamError,
    StreamStalledError,
)
from keeper.stream.eventlog import KEPT_BLOCK_HASHES, Block, Cursor, EventLog, RawEvent
from keeper.stream.events import ContractKind, EventMeta, event_selectors, parse_felts

_log = get_logger("keeper.stream.rpc")

_MAX_RANGE = 2_000  # blocks per getEvents range: commits progress during a long backfill
_REORG_WALK = KEPT_BLOCK_HASHES  # stored hashes compared before giving up on the fork point
_BLOCK_NOT_FOUND = 24
_FATAL_RPC_CODES = {
    31: "page size too big (lower stream.chunk_size)",
    34: "too many keys in filter",
}
_TIMEOUT_S = 30.0
# Between failed polls: full jitter over a window doubling from 0.5 s up to 30 s, with a
# floor so that a dead node is never hammered.
_POLL_RETRY_WAIT = wait_random_exponential(multiplier=0.5, max=30.0, min=0.25)
_WS_MAX_WAIT_S = 60.0
_WS_ERRORS = (OSError, TimeoutError, WebSocketException, StreamDisconnectedError)

Progress = Callable[[str], None]


class RpcError(StreamError):
    """The node answered a JSON-RPC call with an error (retried unless ``fatal``)."""

    code = "stream_rpc"

    def __init__(self, message: str, *, rpc_code: int | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.fatal = fatal


class _Rpc:
    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self._url = url
        self._client = client
        self._id = 0

    async def call(self, method: str, params: dict[str, Any] | list[Any]) -> Any:
        self._id += 1
        payload = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        response = await self._client.post(self._url, json=payload)
        if response.status_code != 200:
            raise RpcError(f"{method}: HTTP {response.status_code} from the node")
        try:
            reply = response.json()
        except ValueError:
            raise RpcError(f"{method}: the node answered with non-JSON") from None
        if not isinstance(reply, dict):
            raise RpcError(f"{method}: unexpected reply {reply!r:.200}")
        if "error" in reply:
            error = reply["error"] if isinstance(reply["error"], dict) else {}
            code = error.get("code")
            rpc_code = code if isinstance(code, int) else None
            text = f"{method}: node error {code}: {error.get('message', reply['error'])}"
            hint = None if rpc_code is None else _FATAL_RPC_CODES.get(rpc_code)
            if hint is not None:
                text += f" — {hint}"
            raise RpcError(text, rpc_code=rpc_code, fatal=hint is not None)
        return reply.get("result")

    async def block_number(self) -> int:
        return int(await self.call("starknet_blockNumber", []))

    async def block_hash(self, number: int) -> int | None:
        """The node's hash of block ``number``; None when it has no such block."""
        try:
            block = await self.call(
                "starknet_getBlockWithTxHashes", {"block_id": {"block_number": number}}
            )
        except RpcError as exc:
            if exc.rpc_code == _BLOCK_NOT_FOUND:
                return None
            raise
        if not isinstance(block, dict) or "block_hash" not in block:
            return None  # a pending/pre-confirmed block has no hash yet
        return int(block["block_hash"], 16)


@dataclass(frozen=True)
class PollResult:
    head: int
    to_block: int | None  # last block ingested by this poll, None if nothing new
    stored: int = 0
    rolled_back_to: int | None = None


class RpcSource:
    """Follows both contracts through ``starknet_getEvents`` into an ``EventLog``."""

    name = "rpc"

    def __init__(
        self,
        log: EventLog,
        *,
        rpc_url: str,
        addresses: dict[int, ContractKind],
        start_block: int = 0,
        chunk_size: int = 256,
        poll_interval_s: float = 2.0,
        confirmation_depth: int = 0,
        stall_deadline_s: float = 300.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_progress: Progress | None = None,
        ws_url: str | None = None,
    ) -> None:
        """``ws_url``: the node's WebSocket endpoint; new-head notifications then trigger
        polls at once (``poll_interval_s`` remains the fallback). ``sleep`` is every wait
        of the poll loop (the interval and the retry backoff): tests pass their own."""
        self._log = log
        self._ws_url = ws_url
        self._new_head = asyncio.Event()
        self._url = rpc_url
        self._addresses = dict(addresses)
        self._selectors = sorted({s for kind in addresses.values() for s in event_selectors(kind)})
        self._start_block = start_block
        self._chunk_size = chunk_size
        self._poll_interval_s = poll_interval_s
        self._depth = confirmation_depth
        self._stall_deadline_s = stall_deadline_s
        self._client = client
        self._clock = clock
        self._sleep = sleep
        self._on_progress = on_progress
        self._last_ok = clock()  # the last successful poll: the stall deadline counts from it

    async def run(self) -> None:
        """Poll until cancelled; StreamStalledError or a fatal node error ends it."""
        watcher = None
        if self._ws_url is not None:
            watcher = asyncio.create_task(self._watch_heads(self._ws_url))
        try:
            await self._poll_loop()
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    async def _idle(self) -> None:
        """Wait for the next poll: a new head announced over WebSocket, or the interval."""
        if self._ws_url is None:
            await self._sleep(self._poll_interval_s)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._new_head.wait(), self._poll_interval_s)
        self._new_head.clear()

    async def _watch_heads(self, url: str) -> None:
        """starknet_subscribeNewHeads (RPC 0.8+): wakes the poll loop at each new block or
        reorg notice. The poll itself stays the one path that reads and checks blocks, so a
        lost notification only delays it by the poll interval. Reconnects back off from
        the poll interval up to a minute; the backoff starts over once a connection has
        delivered notifications."""
        first_wait = min(self._poll_interval_s, _WS_MAX_WAIT_S)
        shown = display_url(url)

        def unavailable(state: RetryCallState) -> None:
            _log.warning(
                "stream.ws_unavailable",
                url=shown,
                error=_display_error(_failure(state)),
                retry_in_s=state.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_WS_ERRORS),
            wait=wait_random_exponential(
                multiplier=first_wait, max=_WS_MAX_WAIT_S, min=first_wait / 2
            ),
            before_sleep=unavailable,
            sleep=asyncio.sleep,  # real time: this task only runs beside the poll loop
        )
        while True:  # one retry sequence per outage; never gives up (polling goes on)
            async for attempt in retrying:
                with attempt:
                    await self._follow_heads(url, shown)

    async def _follow_heads(self, url: str, shown: str) -> None:
        """One subscription, setting ``_new_head`` at each message. Returns when a
        connection that delivered notifications ends (reconnect at once); raises when the
        node cannot be reached or ends the subscription before any notification."""
        request = {"jsonrpc": "2.0", "id": 1, "method": "starknet_subscribeNewHeads", "params": {}}
        notified = False
        try:
            async with ws_connect(url, open_timeout=_TIMEOUT_S) as ws:
                await ws.send(json.dumps(request))
                async for message in ws:
                    notified = notified or _is_notification(message)
                    self._new_head.set()
        except _WS_ERRORS as exc:
            if not notified:
                raise
            _log.warning(
                "stream.ws_unavailable", url=shown, error=_display_error(exc), retry_in_s=0.0
            )
            return
        if not notified:
            raise StreamDisconnectedError("the node ended the subscription without notifying")

    def _poll_retrying(self) -> AsyncRetrying:
        """Retries a failed poll (node down, 5xx, timeouts) with jittered backoff until
        the stall deadline; a fatal node error or any other error ends the run at once."""
        return AsyncRetrying(
            retry=retry_if_exception(_transient),
            wait=_POLL_RETRY_WAIT,
            stop=self._past_stall_deadline,
            before_sleep=self._poll_failed,
            retry_error_callback=self._stalled,
            sleep=self._sleep,
        )

    def _past_stall_deadline(self, state: RetryCallState) -> bool:
        return self._clock() - self._last_ok >= self._stall_deadline_s

    def _poll_failed(self, state: RetryCallState) -> None:
        _log.warning(
            "stream.poll_failed",
            error=_display_error(_failure(state)),
            retry_in_s=state.upcoming_sleep,
        )
        self._progress("error")

    def _stalled(self, state: RetryCallState) -> NoReturn:
        silent = self._clock() - self._last_ok
        failure = _failure(state)
        raise StreamStalledError(
            f"no successful poll of {display_url(self._url)} for {silent:.0f} s "
            f"(last error: {_display_error(failure)}); check the node; the keeper resumes "
            "from its stored cursor when restarted"
        ) from failure

    async def _poll_loop(self) -> None:
        retrying = self._poll_retrying()
        async with self._session() as rpc:
            self._last_ok = self._clock()
            while True:
                result = await self._poll_until_ok(retrying, rpc)
                self._last_ok = self._clock()
                self._progress("poll")
                caught_up = result.to_block is None or result.to_block >= result.head - self._depth
                if caught_up and result.rolled_back_to is None:
                    await self._idle()

    async def _poll_until_ok(self, retrying: AsyncRetrying, rpc: _Rpc) -> PollResult:
        async for attempt in retrying:
            with attempt:
                return await self._poll(rpc)
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def poll_once(self) -> PollResult:
        """One reorg check and one range (for tests and the status command)."""
        async with self._session() as rpc:
            return await self._poll(rpc)

    def _session(self) -> _Session:
        return _Session(self._url, self._client)

    def _progress(self, what: str) -> None:
        if self._on_progress is not None:
            self._on_progress(what)

    async def _poll(self, rpc: _Rpc) -> PollResult:
        head = await rpc.block_number()
        rolled_back_to = await self._check_reorg(rpc)
        cursor = self._log.cursor()
        first = self._start_block if cursor is None else cursor.block_number + 1
        safe = head - self._depth
        if safe < first:
            return PollResult(head, None, rolled_back_to=rolled_back_to)
        last = min(safe, first + _MAX_RANGE - 1)
        end_hash = await rpc.block_hash(last)
        if end_hash is None:
            return PollResult(head, None, rolled_back_to=rolled_back_to)
        blocks = await self._fetch(rpc, first, last)
        if await rpc.block_hash(last) != end_hash:
            _log.warning("stream.reorg_during_read", from_block=first, to_block=last)
            return PollResult(head, None, rolled_back_to=rolled_back_to)
        result = self._log.ingest(blocks, Cursor(last, end_hash))
        if result.stored or result.quarantined:
            _log.info(
                "stream.batch",
                from_block=first,
                to_block=last,
                stored=result.stored,
                quarantined=result.quarantined,
            )
        return PollResult(head, last, result.stored, rolled_back_to)

    async def _check_reorg(self, rpc: _Rpc) -> int | None:
        cursor = self._log.cursor()
        if cursor is None or cursor.block_hash is None:
            return None
        if await rpc.block_hash(cursor.block_number) == cursor.block_hash:
            return None
        for number, stored_hash in self._log.stored_block_hashes(_REORG_WALK):
            if await rpc.block_hash(number) == stored_hash:
                _log.warning("stream.reorg", cursor_block=cursor.block_number, fork_block=number)
                self._log.rollback_after(number)
                return number
        raise ReorgTooDeepError(
            f"the node no longer has any of the last {_REORG_WALK} blocks the keeper "
            f"recorded (cursor at block {cursor.block_number}): the store follows another "
            "chain. Check chain.rpc_url; to resync, restore a backup or start a new store"
        )

    async def _fetch(self, rpc: _Rpc, first: int, last: int) -> list[Block]:
        """All followed events in [first, last], grouped into blocks, in chain order."""
        flt: dict[str, Any] = {
            "from_block": {"block_number": first},
            "to_block": {"block_number": last},
            "address": [hex(a) for a in self._addresses],
            "keys": [[hex(s) for s in self._selectors]],
            "chunk_size": self._chunk_size,
        }
        grouped: list[tuple[int, int, list[RawEvent]]] = []
        ordinals: dict[str, int] = {}
        token: str | None = None
        while True:
            params = dict(flt, continuation_token=token) if token else flt
            page = await rpc.call("starknet_getEvents", {"filter": params})
            if not isinstance(page, dict) or not isinstance(page.get("events"), list):
                raise RpcError(f"starknet_getEvents: unexpected reply {page!r:.200}")
            for item in page["events"]:
                raw = _raw_event(item, ordinals)
                if raw.meta.block_number < first or raw.meta.block_number > last:
                    raise RpcError(
                        f"starknet_getEvents returned block {raw.meta.block_number} outside "
                        f"the requested range {first}..{last}"
                    )
                if grouped and grouped[-1][0] == raw.meta.block_number:
                    grouped[-1][2].append(raw)
                else:
                    grouped.append((raw.meta.block_number, raw.meta.block_hash, [raw]))
            token = page.get("continuation_token")
            if not token:
                return [Block(number, hash_, tuple(events)) for number, hash_, events in grouped]


def _transient(exc: BaseException) -> bool:
    """A poll failure worth retrying: the node or the network, not our request."""
    if isinstance(exc, RpcError):
        return not exc.fatal
    return isinstance(exc, httpx.HTTPError)


def _failure(state: RetryCallState) -> BaseException | None:
    return None if state.outcome is None else state.outcome.exception()


def _is_notification(message: str | bytes) -> bool:
    """A subscription notification (it has a method), not the reply to our request."""
    try:
        parsed = json.loads(message)
    except ValueError:
        return False
    return isinstance(parsed, dict) and "method" in parsed


def _display_error(exc: BaseException | None) -> str:
    return hide_urls(str(exc))


def _raw_event(item: Any, ordinals: dict[str, int]) -> RawEvent:
    """One EMITTED_EVENT. Meta that cannot be read is a node error (the range is re-read);
    keys/data that cannot be read make a quarantined event."""
    if not isinstance(item, dict) or "block_hash" not in item or "block_number" not in item:
        raise RpcError(f"starknet_getEvents returned an event without block: {item!r:.200}")
    try:
        block_hash = int(item["block_hash"], 16)
        tx_text = str(item["transaction_hash"])
        tx_hash = int(tx_text, 16)
        address = int(item["from_address"], 16)
        number = int(item["block_number"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RpcError(
            f"starknet_getEvents returned a malformed event ({exc}): {item!r:.200}"
        ) from None
    if "event_index" in item:
        index = int(item["event_index"])
    else:  # nodes before RPC 0.10: the position among the followed events of the tx
        index = ordinals.get(tx_text, 0)
        ordinals[tx_text] = index + 1
    meta = EventMeta(number, block_hash, tx_hash, index, address)
    keys_raw = item.get("keys")
    data_raw = item.get("data")
    try:
        if not isinstance(keys_raw, list) or not isinstance(data_raw, list):
            raise DecodeError("keys or data is not a list")
        return RawEvent(meta, parse_felts(keys_raw, "keys"), parse_felts(data_raw, "data"))
    except DecodeError as exc:
        return RawEvent(
            meta,
            (),
            (),
            problem=exc.reason,
            raw_keys=tuple(map(str, keys_raw if isinstance(keys_raw, list) else [keys_raw])),
            raw_data=tuple(map(str, data_raw if isinstance(data_raw, list) else [data_raw])),
        )


class _Session:
    """An _Rpc over the injected client, or over one created (and closed) for the run."""

    def __init__(self, url: str, client: httpx.AsyncClient | None) -> None:
        self._url = url
        self._given = client
        self._own: httpx.AsyncClient | None = None

    async def __aenter__(self) -> _Rpc:
        if self._given is not None:
            return _Rpc(self._url, self._given)
        self._own = httpx.AsyncClient(timeout=_TIMEOUT_S)
        return _Rpc(self._url, self._own)

    async def __aexit__(self, *exc: object) -> None:
        if self._own is not None:
            await self._own.aclose()
