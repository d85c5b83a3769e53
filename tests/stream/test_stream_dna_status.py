"""``obsqra-keeper status`` with the DNA source: stored and finalized cursors, the stream's
head (asked of the server with the token) and the lag."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper.cli.commands.status_cmd import collect, render
from keeper.cli.main import main
from keeper.store.db import open_store
from keeper.stream.eventlog import Cursor, EventLog
from tests.fakes.dna_server import FakeDnaServer
from tests.stream.payloads import ADDRESSES, RISK_ENGINE, ROUTER, block, rebalance
from tests.stream.test_stream_status_cmd import node_url  # noqa: F401  (fixture)

TOKEN = "status-token-0123456789"


@pytest.fixture
def dna_url() -> Iterator[str]:
    """A DNA server whose head is block 47, on its own loop in a thread (status runs its
    own asyncio loop)."""
    loop = asyncio.new_event_loop()
    servers: list[FakeDnaServer] = []
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        servers.append(FakeDnaServer([], token=TOKEN, head=Cursor(47, 0x47)))
        loop.run_until_complete(servers[0].__aenter__())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    [server] = servers
    yield server.url
    asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    loop.close()


def setup(tmp_path: Path, rpc_url: str, dna_url: str) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "keeper.toml"
    path.write_text(
        f"""
[chain]
rpc_url = "{rpc_url}"
chain_id = "SN_SEPOLIA"
router_address = "{hex(ROUTER)}"
risk_engine_address = "{hex(RISK_ENGINE)}"
account_address = "0x1"

[stream]
source = "dna"
dna_url = "{dna_url}"

[store]
path = "{tmp_path / "keeper.sqlite3"}"
"""
    )
    token_file = tmp_path / "dna_token"
    token_file.write_text(TOKEN)
    with open_store(tmp_path / "keeper.sqlite3") as store:
        log = EventLog(store, source="dna", addresses=ADDRESSES)
        log.ingest([block(30, rebalance(30, 0, 0, epoch=4))], Cursor(40, 0xABC))
        log.record_finalized(Cursor(35, 0x35))
    return path, {"KEEPER_DNA_TOKEN_FILE": str(token_file)}


def test_status_shows_the_dna_streams_cursors_head_and_lag(
    tmp_path: Path, node_url: str, dna_url: str  # noqa: F811
) -> None:
    config, environ = setup(tmp_path, node_url, dna_url)
    info = collect(config, environ)
    assert info["source"] == "dna"
    assert info["cursor"] == {"block_number": 40, "block_hash": "0xabc"}
    assert info["finalized"] == {"block_number": 35, "block_hash": "0x35"}
    assert info["stream_head"] == {"block_number": 47, "block_hash": "0x47"}
    assert info["stream_lag_blocks"] == 7
    assert info["head"] == 42 and info["lag_blocks"] == 2  # the node's
    text = render(info)
    assert "finalized:   block 35 (0x35)" in text
    assert "stream head: block 47 (lag 7 blocks)" in text
    assert TOKEN not in json.dumps(info) + text


def test_status_without_the_token_says_why_the_head_is_unknown(
    tmp_path: Path, node_url: str, dna_url: str, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    config, _ = setup(tmp_path, node_url, dna_url)
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "stream head: unknown — stream server answered UNAUTHENTICATED" in out
    assert "cursor:      block 40" in out
