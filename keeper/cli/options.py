"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="TOML config file (default: $KEEPER_CONFIG)",
    )


def parse_day(text: str) -> date:
    """argparse type for ``--since YYYY-MM-DD``."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r} is not a date; write YYYY-MM-DD (a UTC day)"
        ) from None
