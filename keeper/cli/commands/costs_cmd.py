"""``obsqra-keeper costs``: what proving and submitting allocations cost, per prover and day,
and per executed allocation."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from typing import Any

from keeper.cli.options import add_config_option, parse_day
from keeper.core.config import KeeperConfig, config_path_from, load_config
from keeper.engine.cheapest import CheapestDecision, decide
from keeper.store.cost_table import DEFAULT_LISTED_ALLOCATIONS, render
from keeper.store.db import open_existing_store
from keeper.store.ledger import Ledger


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "costs",
        help="print the cost ledger: totals per prover and per day, each executed allocation",
        description="Totals of CPU and wall seconds, Atlantic USD (configured prices) and "
        "actual L2 fees per prover and per UTC day; each executed allocation with its "
        "prover CPU seconds, verification and execution fees and the Atlantic price of the "
        "same job, with totals and medians per prover; the same period priced as if every "
        "proof had gone to Atlantic; and, with prover.policy = cheapest (or prover.strk_usd "
        "set), what the cheapest policy would choose for the next job.",
    )
    add_config_option(parser)
    parser.add_argument(
        "--since", type=parse_day, metavar="YYYY-MM-DD", help="only rows on or after this UTC day"
    )
    parser.add_argument(
        "--last",
        type=_count,
        default=DEFAULT_LISTED_ALLOCATIONS,
        metavar="N",
        help="executed allocations listed in the table, the most recent "
        f"(default {DEFAULT_LISTED_ALLOCATIONS}; 0: all; --json lists all)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (fees as strings)"
    )
    parser.set_defaults(handler=_costs)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _costs(args: argparse.Namespace) -> int:
    cfg = load_config(config_path_from(args.config, os.environ), os.environ)
    prover = cfg.prover
    with open_existing_store(cfg.store.path) as store:
        ledger = Ledger(store)
        report = ledger.report(
            args.since,
            atlantic_price_per_job_size=prover.atlantic_price_per_job_size,
            job_size_for_n_steps=prover.atlantic_declared_size,
        )
        cheapest = _cheapest_next(ledger, cfg) if _shows_cheapest(cfg) else None
    if args.json:
        data = report.as_json()
        data["cheapest_next"] = None
        if cheapest is not None:
            n_steps, decision = cheapest
            data["cheapest_next"] = {"n_steps": n_steps, **decision.as_log()}
        print(json.dumps(data))
        return 0
    lines = render(report, listed=args.last)
    if cheapest is not None:
        n_steps, decision = cheapest
        like = "unknown size" if n_steps is None else f"{n_steps} steps, like the last one"
        lines += ["", f"cheapest policy, next job ({like}): {decision.policy}: {decision.reason}"]
    print("\n".join(lines))
    return 0


def _shows_cheapest(cfg: KeeperConfig) -> bool:
    return cfg.prover.policy == "cheapest" or cfg.prover.strk_usd is not None


def _cheapest_next(ledger: Ledger, cfg: KeeperConfig) -> tuple[int | None, CheapestDecision]:
    """What the cheapest policy would choose now for a job the size of the last executed
    one, if both provers may prove it (the daemon also knows the router's gates and
    Atlantic's breaker and credit)."""
    executed = ledger.executed_allocations(
        confirmed_since=None,
        atlantic_price_per_job_size=cfg.prover.atlantic_price_per_job_size,
        job_size_for_n_steps=cfg.prover.atlantic_declared_size,
    )
    sized = [a.n_steps for a in executed if a.n_steps is not None]
    n_steps = sized[-1] if sized else None
    decision = decide(
        executed,
        settings=cfg.prover,
        n_steps=n_steps,
        candidates=("stone", "atlantic"),
        now=datetime.now(UTC),
    )
    return n_steps, decision
