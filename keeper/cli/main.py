"""The ``obsqra-keeper`` command line.

Subcommands live in ``keeper.cli.commands.*``; each module has ``register(subparsers)``
which adds its parser and sets ``handler`` (``(args) -> int``). Errors of our two
hierarchies end the process with their ``exit_code`` and one readable message; only a
bug shows a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from keeper.core.errors import EX_USAGE, ObsqraError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error and exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EX_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> ArgumentParser:
    from keeper.cli import commands

    parser = ArgumentParser(
        prog="obsqra-keeper",
        description="Keeper for the StrategyRouterV2 yield router: follows events, proves "
        "allocations and submits them on Starknet.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for module in commands.MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ObsqraError as exc:
        print(f"obsqra-keeper {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


def run() -> NoReturn:
    sys.exit(main())
