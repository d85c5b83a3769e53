"""``obsqra-keeper status``: source, cursor, lag to head, last event, quarantined count."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from keeper.cli.main import main
from keeper.store.db import open_store
from keeper.stream.eventlog import Cursor, EventLog
from tests.stream.payloads import (
    ADDRESSES,
    RISK_ENGINE,
    ROUTER,
    SELECTORS,
    block,
    meta,
    raw,
    rebalance,
)


class _Head(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": 42}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def node_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Head)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def write_config(tmp_path: Path, rpc_url: str) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(
        f"""
[chain]
rpc_url = "{rpc_url}"
chain_id = "SN_SEPOLIA"
router_address = "{hex(ROUTER)}"
risk_engine_address = "{hex(RISK_ENGINE)}"
account_address = "0x1"

[store]
path = "{tmp_path / "keeper.sqlite3"}"
"""
    )
    return path


def fill_store(tmp_path: Path) -> None:
    with open_store(tmp_path / "keeper.sqlite3") as store:
        log = EventLog(store, source="rpc", addresses=ADDRESSES)
        bad = raw(meta(30, 1, 0), [SELECTORS["RebalanceRequested"]], [])
        log.ingest([block(30, rebalance(30, 0, 0, epoch=4), bad)], Cursor(40, 0xABC))


def test_status_reports_cursor_lag_last_event_and_quarantine(
    tmp_path: Path, node_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_store(tmp_path)
    capsys.readouterr()  # the ingest's own log lines
    config = write_config(tmp_path, node_url)
    assert main(["status", "--config", str(config), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "rpc"
    assert info["cursor"] == {"block_number": 40, "block_hash": "0xabc"}
    assert (info["head"], info["lag_blocks"]) == (42, 2)
    assert (info["events"], info["unprocessed"], info["quarantined"]) == (1, 1, 1)
    assert info["last_event"]["name"] == "RebalanceRequested"
    assert main(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "head:        block 42 (lag 2 blocks)" in text
    assert "quarantined: 1" in text


def test_status_with_unreachable_node_still_reports_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_store(tmp_path)
    config = write_config(tmp_path, "http://127.0.0.1:1")
    assert main(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "head:        unknown — node unreachable (ConnectError" in text
    assert "cursor:      block 40 (0xabc)" in text
    assert "funds:       unknown — the balance could not be read" in text


def test_status_without_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:1")
    assert main(["status", "--config", str(config)]) == 74
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "keeper.sqlite3").exists()
