"""``obsqra-keeper governance``: the recorded history of on-chain governance parameters."""

from __future__ import annotations

import argparse
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from keeper.cli.commands.config_cmd import add_config_option
from keeper.core.config import config_path_from, load_config
from keeper.core.errors import KeeperError
from keeper.store.db import Store, open_store
from keeper.store.governance import GovernanceTracker, format_value


class NoStoreError(KeeperError):
    """A read-only command found no store: the keeper never ran with this config."""

    code = "no_store"


def open_existing_store(path: Path) -> Store:
    """Open the store at ``path`` without ever creating one (reports read, never create)."""
    if not path.is_file():
        raise NoStoreError(
            f"no store at {path} yet (the keeper has not run; check store.path in the config)"
        )
    return open_store(path)


def parse_day(text: str) -> date:
    """argparse type for ``--since YYYY-MM-DD``."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r} is not a date; write YYYY-MM-DD (a UTC day)"
        ) from None


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "governance",
        help="list the governance parameter changes the keeper has recorded",
        description="List every recorded change of the router's governance parameters and "
        "RiskEngine's model parameters: values read at start (no tx) and on-chain events "
        "(block, tx). Addresses and hashes in hex.",
    )
    add_config_option(parser)
    parser.add_argument(
        "--since",
        type=parse_day,
        metavar="YYYY-MM-DD",
        help="only rows recorded on or after this UTC day",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    parser.set_defaults(handler=_governance)


def _governance(args: argparse.Namespace) -> int:
    cfg = load_config(config_path_from(args.config, os.environ), os.environ)
    with open_existing_store(cfg.store.path) as store:
        rows = GovernanceTracker(store).changes(since=args.since)
    shown = [_shown(row) for row in rows]
    if args.json:
        print(json.dumps(shown))
        return 0
    if not shown:
        print("no governance changes recorded" + (f" since {args.since}" if args.since else ""))
        return 0
    columns = ("block", "tx", "contract", "param", "old", "new")
    table = [columns] + [
        (
            "" if row["block"] is None else str(row["block"]),
            row["tx"] or "(read at start)",
            row["contract"],
            row["param"],
            row["old"] or "",
            row["new"],
        )
        for row in shown
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    param = row["param"]
    return {
        "block": row["block_number"],
        "tx": None if row["tx_hash"] is None else hex(row["tx_hash"]),
        "contract": row["contract"],
        "param": param,
        "old": None if row["old"] is None else format_value(param, row["old"]),
        "new": format_value(param, row["new"]),
        "event_id": row["event_id"],
        "at": row["at"],
    }
