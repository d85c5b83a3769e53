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


def felt_arg(text: str) -> int:
    """argparse type for a field element given as 0x… or decimal."""
    from keeper.chain.codec import FIELD_PRIME

    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (0x… or decimal)") from None
    if not 0 <= value < FIELD_PRIME:
        raise argparse.ArgumentTypeError(f"{text} is not a field element")
    return value


def address_arg(text: str) -> int:
    """argparse type for a contract or account address: 0x hex, a non-zero felt."""
    if not text.lower().startswith("0x"):
        raise argparse.ArgumentTypeError(f"{text!r} is not an address (0x followed by hex)")
    value = felt_arg(text)
    if value == 0:
        raise argparse.ArgumentTypeError("the zero address is not an address")
    return value
