"""``obsqra-keeper run``: the daemon (see keeper.engine.daemon)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from keeper.cli.options import add_config_option


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "run",
        help="run the keeper daemon (systemd Type=notify)",
        description="Follow the router's events, prove due allocations and submit them. "
        "SIGTERM stops after checkpointing, SIGHUP reloads the config. Exit codes: 0 "
        "stopped, 78 invalid config, 74 store unusable, 75 stream stalled, 1 other fatal.",
    )
    add_config_option(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    # Imported here: the daemon pulls in the whole keeper (starknet-py, cairo-lang).
    from keeper.core.config import config_path_from, load_config
    from keeper.core.logs import configure_logging
    from keeper.engine.daemon import run_keeper

    environ = dict(os.environ)
    path = config_path_from(args.config, environ)
    cfg = load_config(path, environ)
    configure_logging(level=cfg.log.level, fmt=cfg.log.format, secrets=cfg.secrets.values())
    return asyncio.run(run_keeper(cfg, environ, path))
