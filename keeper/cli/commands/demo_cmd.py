"""``obsqra-keeper demo``: devnet, contracts, keeper and a few rebalances, end to end."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the keeper end to end on a local starknet-devnet (make demo)",
        description=(
            "Start a starknet-devnet on a free port, build and deploy the contracts, start "
            "the keeper (Stone and Integrity when installed, else the dev prover), drive "
            "metric updates and rebalance requests, and print the allocations executed "
            "on-chain and the cost "
            "table. Every process it starts is stopped on exit and on Ctrl-C. Exit 0 on "
            "success, 1 on a failure, 130 when interrupted."
        ),
    )
    parser.add_argument(
        "--epochs",
        type=_epochs,
        default=3,
        help="allocations to execute, the keeper's own first one included (default: 3)",
    )
    parser.add_argument(
        "--prover",
        choices=("dev", "stone", "auto"),
        default="auto",
        help=(
            "dev: trusted devnet registration, no proof (quick); stone: the real path, "
            "Stone + swiftness + Integrity's verification on the devnet (Stone from "
            "`make setup`'s .tools/stone, KEEPER_PROVER__STONE_*_PATH or PATH; Integrity's "
            "classes from ../shared/integrity); auto (default): stone when both are there, "
            "else dev"
        ),
    )
    parser.add_argument(
        "--keep-dir",
        type=Path,
        metavar="DIR",
        help="work in DIR and keep it (config, logs, store, pids.json); default: a "
        "temporary directory removed at the end",
    )
    parser.set_defaults(handler=_demo)


def _epochs(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from exc
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not in 1..100")
    return value


def _demo(args: argparse.Namespace) -> int:
    from keeper.devnet.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(epochs=args.epochs, prover=args.prover, keep_dir=args.keep_dir))
