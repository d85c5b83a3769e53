"""``obsqra-keeper governance``: the recorded history of on-chain governance parameters."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from keeper.cli.options import add_config_option, parse_day
from keeper.cli.tables import format_table
from keeper.core.config import config_path_from, load_config
from keeper.store.db import open_existing_store
from keeper.store.governance import GovernanceTracker, format_value


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
    table = [
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
    print("\n".join(format_table(columns, table)))
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
