"""``obsqra-keeper costs``: what proving and submitting allocations cost, per prover and day."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from keeper.cli.options import add_config_option, parse_day
from keeper.core.config import config_path_from, load_config
from keeper.store.cost_table import render
from keeper.store.db import open_existing_store
from keeper.store.ledger import Ledger


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "costs",
        help="print the cost ledger: totals per prover and per day, cost per allocation",
        description="Totals of CPU and wall seconds, Atlantic USD (configured prices) and "
        "actual L2 fees per prover and per UTC day; the number of executed allocations and "
        "the cost of each; and the same period priced as if every proof had gone to Atlantic.",
    )
    add_config_option(parser)
    parser.add_argument(
        "--since", type=parse_day, metavar="YYYY-MM-DD", help="only rows on or after this UTC day"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (fees as strings)"
    )
    parser.set_defaults(handler=_costs)


def _costs(args: argparse.Namespace) -> int:
    cfg = load_config(config_path_from(args.config, os.environ), os.environ)
    with open_existing_store(cfg.store.path) as store:
        report = Ledger(store).report(
            args.since,
            atlantic_price_per_job_size=cfg.prover.atlantic_price_per_job_size,
        )
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print("\n".join(render(report)))
    return 0
