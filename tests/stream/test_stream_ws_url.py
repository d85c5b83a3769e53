"""``stream.ws_url``: validated in the config, wired into the RPC source by build_source, and
never logged beyond its scheme://host[:port] (providers put API keys in the path/query)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from structlog.testing import LogCapture
from structlog.typing import EventDict, WrappedLogger
from websockets.asyncio.server import ServerConnection, serve

from keeper.core.config import load_config
from keeper.core.errors import ConfigError
from keeper.store.db import Store
from keeper.stream import RpcSource, build_source, open_event_log
from keeper.stream.eventlog import EventLog
from tests.stream.payloads import ADDRESSES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "keeper.example.toml"
KEY = "k3y0123456789abcdef"
SECRET = "s3cr3t-query-value"


class EventWaiter(LogCapture):
    """Captures log entries and lets a test await the first one named ``event``."""

    def __init__(self, event: str) -> None:
        super().__init__()
        self.seen = asyncio.Event()
        self._event = event

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("event") == self._event:
            self.seen.set()
        return super().__call__(logger, method, event_dict)


@contextmanager
def wait_for_log(event: str) -> Iterator[EventWaiter]:
    waiter = EventWaiter(event)
    previous = structlog.get_config()["processors"]
    structlog.configure(processors=[waiter])
    try:
        yield waiter
    finally:
        structlog.configure(processors=previous)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there


def rpc_source(event_log: EventLog, ws_url: str) -> RpcSource:
    """An RPC source whose polls find an empty chain (the WebSocket is what is tested)."""

    def node(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        result: Any = 0 if body["method"] == "starknet_blockNumber" else {"block_hash": "0x1"}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result})

    return RpcSource(
        event_log,
        rpc_url="http://node",
        addresses=ADDRESSES,
        client=httpx.AsyncClient(transport=httpx.MockTransport(node)),
        poll_interval_s=600,
        ws_url=ws_url,
    )


async def run_until_logged(source: RpcSource, waiter: EventWaiter) -> None:
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(waiter.seen.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- the option -------------------------------------------------------------------------


def test_ws_url_is_unset_by_default() -> None:
    assert load_config(EXAMPLE, {}).stream.ws_url is None


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("# ws_url = ", "ws_url = ", 1)
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    assert load_config(path, {}).stream.ws_url == "wss://starknet-sepolia.example.org/ws/v0_8"


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:5050/ws", f"wss://rpc.example.org/ws/v0_8/{KEY}?apikey={SECRET}"]
)
def test_ws_and_wss_urls_are_accepted_as_given(url: str) -> None:
    assert load_config(EXAMPLE, {"KEEPER_STREAM__WS_URL": url}).stream.ws_url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:5050/ws", "must be a ws:// or wss:// URL with a host"),
        ("127.0.0.1:5050", "must be a ws:// or wss:// URL with a host"),
        ("ws:///ws", "must be a ws:// or wss:// URL with a host"),
        ("", "must be a ws:// or wss:// URL with a host"),
        ("wss://rpc.example.org:port/ws", "is not a valid URL"),
        ("ws://[::1/ws", "is not a valid URL"),
    ],
)
def test_other_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, {"KEEPER_STREAM__WS_URL": url})
    [problem] = info.value.problems
    assert problem.startswith("stream.ws_url: ")
    assert reason in problem


# --- build_source ------------------------------------------------------------------------


async def test_build_source_subscribes_at_the_configured_ws_url(store: Store) -> None:
    requests: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        await requests.put((ws.request.path, json.loads(await ws.recv())))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        cfg = load_config(
            EXAMPLE,
            {
                "KEEPER_CHAIN__RPC_URL": f"http://127.0.0.1:{closed_port()}",
                "KEEPER_STREAM__WS_URL": f"ws://127.0.0.1:{port}/ws/{KEY}",
            },
        )
        source = build_source(cfg, open_event_log(store, cfg))
        assert isinstance(source, RpcSource)
        task = asyncio.create_task(source.run())
        try:
            path, request = await asyncio.wait_for(requests.get(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert path == f"/ws/{KEY}"  # the whole URL is used to connect…
    assert request["method"] == "starknet_subscribeNewHeads"


# --- what reaches the log ----------------------------------------------------------------


async def test_an_unreachable_ws_url_is_logged_as_scheme_host_and_port(
    event_log: EventLog,
) -> None:
    port = closed_port()
    url = f"ws://user:pass@127.0.0.1:{port}/ws/{KEY}?apikey={SECRET}"
    with wait_for_log("stream.ws_unavailable") as logs:
        await run_until_logged(rpc_source(event_log, url), logs)
    [entry] = [e for e in logs.entries if e["event"] == "stream.ws_unavailable"]
    assert entry["url"] == f"ws://127.0.0.1:{port}"  # …but only this is ever shown
    assert entry["retry_in_s"] > 0
    text = repr(logs.entries)
    for hidden in (KEY, SECRET, "user:pass"):
        assert hidden not in text


async def test_a_subscription_ended_before_any_notification_is_retried(
    event_log: EventLog,
) -> None:
    async def reply_and_close(ws: ServerConnection) -> None:
        request = json.loads(await ws.recv())
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x1"}))

    async with serve(reply_and_close, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with wait_for_log("stream.ws_unavailable") as logs:
            await run_until_logged(rpc_source(event_log, f"ws://127.0.0.1:{port}/{KEY}"), logs)
    [entry] = [e for e in logs.entries if e["event"] == "stream.ws_unavailable"]
    assert entry["error"] == "the node ended the subscription without notifying"
    assert entry["url"] == f"ws://127.0.0.1:{port}"
    assert 30 <= entry["retry_in_s"] <= 60  # backs off from the poll interval (capped at 60 s)
    assert KEY not in repr(logs.entries)
