"""RpcSource logic against an in-memory chain served through httpx.MockTransport: paging,
depth, reorgs (incl. one racing the read), node errors. The real node is in
test_stream_rpc_devnet.py."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from keeper.stream.errors import EX_TEMPFAIL, ReorgTooDeepError, StreamError, StreamStalledError
from keeper.stream.eventlog import Cursor, EventLog
from keeper.stream.events import SELECTORS, RebalanceRequested
from keeper.stream.rpc_source import RpcSource
from tests.stream.payloads import ADDRESSES, ROUTER, block_hash


@dataclass
class FakeChain:
    """Blocks 0..head; block n has ``events_per_block[n]`` RebalanceRequested(epoch=n)."""

    head: int
    events_per_block: dict[int, int] = field(default_factory=dict)
    fork: dict[int, int] = field(default_factory=dict)  # block -> fork id (changes its hash)
    fail_next: int = 0
    on_get_events: Any = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def hash_of(self, n: int) -> int:
        # A block's hash commits to its ancestors: any fork at or below n changes it.
        return block_hash(n, max((f for b, f in self.fork.items() if b <= n), default=0))

    def reorg_from(self, n: int, fork: int) -> None:
        self.fork[n] = fork

    def _events(self, first: int, last: int) -> list[dict[str, Any]]:
        out = []
        for n in range(first, min(last, self.head) + 1):
            for i in range(self.events_per_block.get(n, 0)):
                out.append(
                    {
                        "from_address": hex(ROUTER),
                        "keys": [hex(SELECTORS["RebalanceRequested"]), hex(n)],
                        "data": ["0xab", "0x1"],
                        "block_hash": hex(self.hash_of(n)),
                        "block_number": n,
                        "transaction_hash": hex(0x7000 + n * 100 + i),
                        "transaction_index": i,
                        "event_index": 0,
                    }
                )
        return out

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append(body)
        if self.fail_next:
            self.fail_next -= 1
            return httpx.Response(503, text="busy")
        method, params = body["method"], body["params"]
        if method == "starknet_blockNumber":
            result: Any = self.head
        elif method == "starknet_getBlockWithTxHashes":
            n = params["block_id"]["block_number"]
            if n > self.head:
                return self._error(body, 24, "Block not found")
            result = {
                "block_hash": hex(self.hash_of(n)),
                "block_number": n,
                "status": "ACCEPTED_ON_L2",
                "transactions": [],
            }
        elif method == "starknet_getEvents":
            flt = params["filter"]
            if flt["chunk_size"] > 1024:
                return self._error(body, 31, "Requested page size is too big")
            if self.on_get_events is not None:
                self.on_get_events()
            first, last = flt["from_block"]["block_number"], flt["to_block"]["block_number"]
            events = self._events(first, last)
            start = int(flt.get("continuation_token") or 0)
            page = events[start : start + flt["chunk_size"]]
            result = {"events": page}
            if start + len(page) < len(events):
                result["continuation_token"] = str(start + len(page))
        else:
            return self._error(body, -32601, "method not found")
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result})

    @staticmethod
    def _error(body: dict[str, Any], code: int, message: str) -> httpx.Response:
        error = {"code": code, "message": message}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "error": error})


def source(log: EventLog, chain: FakeChain, **kwargs: Any) -> RpcSource:
    client = httpx.AsyncClient(transport=httpx.MockTransport(chain.handle))
    return RpcSource(
        log,
        rpc_url="http://node",
        addresses=ADDRESSES,
        client=client,
        **kwargs,
    )


def epochs(log: EventLog) -> list[int]:
    out = []
    for stored in log.next_unprocessed(10_000):
        assert isinstance(stored.event, RebalanceRequested)
        out.append(stored.event.epoch)
    return out


async def test_pages_through_continuation_tokens_and_honours_depth(event_log: EventLog) -> None:
    chain = FakeChain(head=20, events_per_block={n: 3 for n in range(5, 21)})
    src = source(event_log, chain, start_block=6, chunk_size=4, confirmation_depth=2)
    result = await src.poll_once()
    assert (result.head, result.to_block, result.stored) == (20, 18, 13 * 3)
    assert epochs(event_log) == [n for n in range(6, 19) for _ in range(3)]
    assert event_log.cursor() == Cursor(18, chain.hash_of(18))
    tokens = [
        c["params"]["filter"].get("continuation_token")
        for c in chain.calls
        if c["method"] == "starknet_getEvents"
    ]
    assert tokens == [None, *(str(4 * i) for i in range(1, 10))]
    flt = next(c for c in chain.calls if c["method"] == "starknet_getEvents")["params"]["filter"]
    assert sorted(int(a, 16) for a in flt["address"]) == sorted(ADDRESSES)
    assert len(flt["keys"][0]) == 12  # the two ownership events are shared
    # Nothing new until the head moves past the depth.
    assert (await src.poll_once()).to_block is None
    chain.head = 21
    assert (await src.poll_once()).to_block == 19


async def test_reorg_is_rolled_back_to_the_fork_point(event_log: EventLog) -> None:
    calls: list[int] = []
    event_log.register_rollback_hook(lambda db, n: calls.append(n))
    chain = FakeChain(head=10, events_per_block={4: 1, 7: 1, 9: 1})
    src = source(event_log, chain)
    await src.poll_once()
    assert epochs(event_log) == [4, 7, 9]
    chain.reorg_from(8, fork=1)
    chain.events_per_block = {4: 1, 7: 1, 8: 2}
    result = await src.poll_once()
    assert result.rolled_back_to == 7
    assert calls == [7]
    assert epochs(event_log) == [4, 7, 8, 8]
    assert event_log.cursor() == Cursor(10, chain.hash_of(10))


async def test_shorter_chain_after_reorg_is_followed(event_log: EventLog) -> None:
    chain = FakeChain(head=10, events_per_block={3: 1, 9: 1})
    src = source(event_log, chain)
    await src.poll_once()
    chain.head = 6  # blocks 7..10 aborted
    chain.reorg_from(7, fork=1)
    result = await src.poll_once()
    assert (result.rolled_back_to, result.to_block) == (3, 6)
    assert epochs(event_log) == [3]


async def test_reorg_racing_the_read_discards_the_range(event_log: EventLog) -> None:
    chain = FakeChain(head=5, events_per_block={5: 1})
    chain.on_get_events = lambda: chain.reorg_from(5, fork=1)
    src = source(event_log, chain)
    assert (await src.poll_once()).to_block is None
    assert event_log.cursor() is None
    chain.on_get_events = None
    assert (await src.poll_once()).to_block == 5
    [stored] = event_log.next_unprocessed()
    assert stored.event.meta.block_hash == chain.hash_of(5)


async def test_reorg_below_every_recorded_block_is_refused(event_log: EventLog) -> None:
    chain = FakeChain(head=3)
    src = source(event_log, chain)
    await src.poll_once()
    chain.reorg_from(0, fork=1)
    with pytest.raises(ReorgTooDeepError, match="follows another chain"):
        await src.poll_once()


async def test_page_size_over_the_node_limit_is_a_config_error(event_log: EventLog) -> None:
    chain = FakeChain(head=3)
    with pytest.raises(StreamError, match=r"lower stream\.chunk_size"):
        await source(event_log, chain, chunk_size=2000).run()


async def test_node_errors_are_retried_then_count_as_stalled(event_log: EventLog) -> None:
    chain = FakeChain(head=3, events_per_block={2: 1}, fail_next=2)
    seen: list[str] = []
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += 5.0  # each wait moves the clock on by 5 s
        if seen.count("poll") >= 1:
            chain.fail_next = 10**9  # the node goes away for good

    src = source(
        event_log,
        chain,
        on_progress=seen.append,
        clock=lambda: now[0],
        sleep=fake_sleep,
        stall_deadline_s=30,
        poll_interval_s=1,
    )
    with pytest.raises(StreamStalledError, match="no successful poll") as info:
        await src.run()
    assert seen[:3] == ["error", "error", "poll"]
    assert epochs(event_log) == [2]
    # The last successful poll was at 10 s (two failed ones, one wait each, then the
    # interval): every retry after it is 5 s on the fake clock until 30 s of silence.
    assert seen[3:] == ["error"] * 5
    assert "for 30 s (last error: starknet_blockNumber: HTTP 503" in str(info.value)
    assert info.value.exit_code == EX_TEMPFAIL


async def test_retries_log_each_failure_and_resume_from_the_cursor(event_log: EventLog) -> None:
    """A node that fails a few polls: each failure is logged with the wait before the next
    try, the waits go through the injected sleep, and nothing is lost or repeated."""
    chain = FakeChain(head=4, events_per_block={1: 1, 4: 1}, fail_next=3)
    waits: list[float] = []

    class CaughtUp(Exception):
        pass

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        if chain.fail_next == 0 and event_log.cursor() is not None:
            raise CaughtUp  # the poll interval once caught up: the test is done

    src = source(event_log, chain, sleep=fake_sleep, poll_interval_s=7.0)
    with capture_logs() as logs, pytest.raises(CaughtUp):
        await src.run()
    failures = [e for e in logs if e["event"] == "stream.poll_failed"]
    assert [e["error"] for e in failures] == ["starknet_blockNumber: HTTP 503 from the node"] * 3
    assert [e["retry_in_s"] for e in failures] == waits[:3]
    assert all(0.25 <= wait <= 30.0 for wait in waits[:3])
    assert waits[3] == 7.0  # then the poll interval, once caught up
    assert epochs(event_log) == [1, 4]
    assert event_log.cursor() == Cursor(4, chain.hash_of(4))


async def test_the_stall_message_shows_only_the_nodes_origin(event_log: EventLog) -> None:
    chain = FakeChain(head=3, fail_next=10**9)
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    client = httpx.AsyncClient(transport=httpx.MockTransport(chain.handle))
    src = RpcSource(
        event_log,
        rpc_url="https://user:pw@rpc.example.org:8443/v3/KEY0123456789?apikey=SECRET42",
        addresses=ADDRESSES,
        client=client,
        clock=lambda: now[0],
        sleep=fake_sleep,
        stall_deadline_s=60,
    )
    with capture_logs() as logs, pytest.raises(StreamStalledError) as info:
        await src.run()
    message = str(info.value)
    assert "no successful poll of https://rpc.example.org:8443 for " in message
    text = message + repr(logs)
    for secret in ("KEY0123456789", "SECRET42", "user:pw"):
        assert secret not in text


async def test_websocket_new_head_wakes_the_poll_loop(event_log: EventLog) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    chain = FakeChain(head=2)
    subscribed = asyncio.Event()
    connections: list[ServerConnection] = []
    polled = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        request = json.loads(await ws.recv())
        assert request["method"] == "starknet_subscribeNewHeads"
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x1"}))
        connections.append(ws)
        subscribed.set()
        await ws.wait_closed()

    def on_progress(what: str) -> None:
        if what == "poll":
            polled.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        src = source(
            event_log,
            chain,
            poll_interval_s=600,
            ws_url=f"ws://127.0.0.1:{port}",
            on_progress=on_progress,
        )
        task = asyncio.create_task(src.run())
        try:
            await asyncio.wait_for(subscribed.wait(), 10)
            await asyncio.wait_for(polled.wait(), 10)
            assert event_log.cursor() == Cursor(2, chain.hash_of(2))
            polled.clear()
            chain.head, chain.events_per_block = 3, {3: 1}
            notice = {
                "jsonrpc": "2.0",
                "method": "starknet_subscriptionNewHeads",
                "params": {"subscription_id": "0x1", "result": {"block_number": 3}},
            }
            await connections[0].send(json.dumps(notice))
            await asyncio.wait_for(polled.wait(), 10)  # the 600 s interval never fires here
            # The subscription reply itself may have woken one poll first: wait for block 3.
            while event_log.cursor() != Cursor(3, chain.hash_of(3)):
                polled.clear()
                await asyncio.wait_for(polled.wait(), 10)
            assert epochs(event_log) == [3]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
