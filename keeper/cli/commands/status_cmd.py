"""``obsqra-keeper status``: where the event stream is, and the account's funds.

Reads the stream tables of the store (opening it migrates an older file, as every
command does) and asks the node for its head and the account's STRK balance with a
short timeout; with the DNA source, asks the stream's server for its head too. An
unreachable node or server is reported, not fatal. The balance is shown with the
rebalances it pays for at the ledger's median cost per executed allocation
(keeper.engine.funds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx

from keeper.cli.options import add_config_option
from keeper.core.config import KeeperConfig, config_path_from, load_config
from keeper.core.errors import StoreError
from keeper.engine.funds import FundsStatus, strk
from keeper.engine.funds_guard import funds_status_at
from keeper.store.db import open_store
from keeper.store.ledger import Ledger
from keeper.stream.dna_source import DnaEndpoint, fetch_status
from keeper.stream.errors import StreamError
from keeper.stream.eventlog import Cursor, EventLog

_HEAD_TIMEOUT_S = 3.0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "status",
        help="show the event stream (source, cursor, lag to head, last event) and the "
        "account's STRK with the rebalances it pays for",
    )
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_status)


def node_head(rpc_url: str, timeout_s: float = _HEAD_TIMEOUT_S) -> tuple[int | None, str | None]:
    """(latest accepted block, None), or (None, why not). The URL is never echoed: it may
    carry a provider key."""
    payload = {"jsonrpc": "2.0", "id": 1, "method": "starknet_blockNumber", "params": []}
    try:
        response = httpx.post(rpc_url, json=payload, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return None, f"node unreachable ({type(exc).__name__}: {exc})"
    if response.status_code != 200:
        return None, f"node answered HTTP {response.status_code}"
    try:
        reply = response.json()
        return int(reply["result"]), None
    except (ValueError, KeyError, TypeError):
        return None, "node answered without a block number"


def stream_head(
    config: KeeperConfig, timeout_s: float = _HEAD_TIMEOUT_S
) -> tuple[Cursor | None, str | None]:
    """(the DNA stream's head, None), or (None, why not); (None, None) for other sources."""
    stream = config.stream
    if stream.source != "dna" or stream.dna_url is None:
        return None, None
    token = config.secrets.dna_token
    try:
        endpoint = DnaEndpoint.parse(stream.dna_url)
        head, _ = asyncio.run(
            fetch_status(
                endpoint,
                None if token is None else token.get_secret_value(),
                timeout_s=timeout_s,
            )
        )
    except StreamError as exc:
        return None, str(exc)
    except grpc.aio.AioRpcError as exc:
        return None, f"stream server answered {exc.code().name}"
    if head is None:
        return None, "stream server did not say its head"
    return head, None


def _cursor_json(cursor: Cursor | None) -> dict[str, Any] | None:
    if cursor is None:
        return None
    return {
        "block_number": cursor.block_number,
        "block_hash": None if cursor.block_hash is None else hex(cursor.block_hash),
    }


def collect(config_path: Path | None, environ: dict[str, str]) -> dict[str, Any]:
    config = load_config(config_path, environ)
    path = config.store.path
    if not path.exists():
        raise StoreError(
            f"no store at {path}: the keeper has not run with this config yet "
            "(or store.path points elsewhere)"
        )
    account = int(config.chain.account_address, 16)
    with open_store(path) as store:
        status = EventLog(store, source=config.stream.source).status()
        funds, funds_error = asyncio.run(
            funds_status_at(
                config.chain.rpc_url, account, Ledger(store), config.funds,
                timeout_s=_HEAD_TIMEOUT_S,
            )
        )
    head, head_error = node_head(config.chain.rpc_url)
    dna_head, dna_head_error = stream_head(config)
    cursor = status.cursor
    return {
        "source": config.stream.source,
        "store_source": status.source,
        "cursor": _cursor_json(cursor),
        "finalized": _cursor_json(status.finalized),
        "head": head,
        "head_error": head_error,
        "lag_blocks": None if head is None or cursor is None else head - cursor.block_number,
        "stream_head": _cursor_json(dna_head),
        "stream_head_error": dna_head_error,
        "stream_lag_blocks": None
        if dna_head is None or cursor is None
        else max(0, dna_head.block_number - cursor.block_number),
        "events": status.events,
        "unprocessed": status.unprocessed,
        "quarantined": status.quarantined,
        "last_event": status.last_event,
        "account": hex(account),
        "funds": None if funds is None else funds.as_json(),
        "funds_line": None if funds is None else _funds_line(funds, hex(account)),
        "funds_error": funds_error,
    }


def _funds_line(funds: FundsStatus, account: str) -> str:
    line = (
        f"{strk(funds.balance_fri)} in {account}: {funds.rebalances} rebalance(s) at "
        f"{funds.figure.describe()}"
    )
    if funds.low:
        line += f"; LOW: below funds.min_rebalances = {funds.min_rebalances}, top up the account"
    return line


def render(info: dict[str, Any]) -> str:
    cursor = info["cursor"]
    lines = [f"source:      {info['source']}"]
    if info["store_source"] not in (None, info["source"]):
        lines[0] += f" (cursor last written by the {info['store_source']} source)"
    lines.append(
        "cursor:      none (nothing ingested yet)"
        if cursor is None
        else f"cursor:      block {cursor['block_number']}"
        + (f" ({cursor['block_hash']})" if cursor["block_hash"] else "")
    )
    finalized = info.get("finalized")
    if finalized is not None:
        lines.append(
            f"finalized:   block {finalized['block_number']}"
            + (f" ({finalized['block_hash']})" if finalized["block_hash"] else "")
        )
    if info["head"] is None:
        lines.append(f"head:        unknown — {info['head_error']}")
    else:
        lag = "" if info["lag_blocks"] is None else f" (lag {info['lag_blocks']} blocks)"
        lines.append(f"head:        block {info['head']}{lag}")
    if info.get("stream_head") is not None:
        lag_blocks = info["stream_lag_blocks"]
        lag = "" if lag_blocks is None else f" (lag {lag_blocks} blocks)"
        lines.append(f"stream head: block {info['stream_head']['block_number']}{lag}")
    elif info.get("stream_head_error"):
        lines.append(f"stream head: unknown — {info['stream_head_error']}")
    last = info["last_event"]
    if last is None:
        lines.append("last event:  none")
    else:
        done = "processed" if last["processed_at"] else "not processed yet"
        lines.append(
            f"last event:  {last['name']} ({last['contract']}) block {last['block_number']} "
            f"tx {last['tx_hash']} #{last['event_index']}, {done}"
        )
    lines.append(f"events:      {info['events']} stored, {info['unprocessed']} unprocessed")
    lines.append(f"quarantined: {info['quarantined']}")
    if info["funds_line"] is not None:
        lines.append(f"funds:       {info['funds_line']}")
    else:
        lines.append(f"funds:       unknown — {info['funds_error']}")
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    info = collect(config_path_from(args.config, os.environ), dict(os.environ))
    print(json.dumps(info) if args.json else render(info))
    return 0
