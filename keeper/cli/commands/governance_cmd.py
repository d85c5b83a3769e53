"""``obsqra-keeper governance``: the router's and RiskEngine's timelocked changes (pending
with their eta, applied, cancelled) and the recorded history of governance parameters."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from typing import Any

from keeper.cli.options import add_config_option, parse_day
from keeper.cli.tables import format_table
from keeper.core.config import config_path_from, load_config
from keeper.store.db import open_existing_store
from keeper.store.governance import GovernanceTracker, format_proposal_values, format_value


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "governance",
        help="pending, applied and cancelled governance changes, and the parameter history",
        description="What the router's and RiskEngine's governance did and is about to do, "
        "as the keeper recorded it: the changes proposed and still pending (RiskEngine's "
        "model parameters, oracle and delay too; with the eta from which the "
        "owner may apply them, and when they expire), the applied and cancelled ones, and "
        "every change of the router's governance parameters and RiskEngine's model "
        "parameters (values read at start: no tx). Addresses and hashes in hex, verifier "
        "pins as text, times in UTC.",
    )
    add_config_option(parser)
    parser.add_argument(
        "--since",
        type=parse_day,
        metavar="YYYY-MM-DD",
        help="only rows recorded on or after this UTC day (pending changes are always shown)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object {"pending": [...], "proposals": [...], "history": [...]}',
    )
    parser.set_defaults(handler=_governance)


def _governance(args: argparse.Namespace) -> int:
    cfg = load_config(config_path_from(args.config, os.environ), os.environ)
    with open_existing_store(cfg.store.path) as store:
        tracker = GovernanceTracker(store)
        pending = [_shown_proposal(row) for row in tracker.pending_proposals()]
        proposals = [_shown_proposal(row) for row in tracker.proposals(since=args.since)]
        history = [_shown(row) for row in tracker.changes(since=args.since)]
    if args.json:
        print(json.dumps({"pending": pending, "proposals": proposals, "history": history}))
        return 0
    sections = [
        _pending_table(pending),
        _closed_table([p for p in proposals if p["status"] != "proposed"]),
        _history_table(history),
    ]
    shown = [section for section in sections if section]
    if not shown:
        print("no governance changes recorded" + (f" since {args.since}" if args.since else ""))
        return 0
    print("\n\n".join("\n".join(section) for section in shown))
    return 0


def _pending_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    columns = ("contract", "param", "subject", "values", "eta", "expires", "proposed in")
    table = [
        (
            r["contract"],
            r["param"],
            r["subject"] or "",
            r["values"],
            r["eta_utc"],
            r["expires_utc"],
            r["tx"],
        )
        for r in rows
    ]
    title = "pending changes (the owner may apply each from its eta until it expires):"
    return [title, *format_table(columns, table)]


def _closed_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    columns = ("block", "tx", "status", "contract", "param", "subject", "values", "eta")
    table = [
        (
            str(r["block"]),
            r["tx"],
            r["status"],
            r["contract"],
            r["param"],
            r["subject"] or "",
            r["values"],
            r["eta_utc"],
        )
        for r in rows
    ]
    return ["applied and cancelled changes:", *format_table(columns, table)]


def _history_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
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
        for row in rows
    ]
    return ["parameter history:", *format_table(columns, table)]


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown_proposal(row: dict[str, Any]) -> dict[str, Any]:
    from keeper.chain.governance import GOVERNANCE_GRACE_S  # applicable until eta + grace

    param = row["param"]
    return {
        "contract": row["contract"],
        "param": param,
        "subject": hex(row["subject"]) if row["subject"] else None,
        "values": format_proposal_values(param, row["values"]),
        "raw_values": [hex(v) for v in row["values"]],
        "eta": row["eta"],
        "eta_utc": _utc(row["eta"]),
        "expires_utc": _utc(row["eta"] + GOVERNANCE_GRACE_S),
        "status": row["status"],
        "block": row["block_number"],
        "tx": hex(row["tx_hash"]),
        "event_id": row["event_id"],
        "at": row["at"],
    }


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
