"""``obsqra-keeper config check|show``."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from keeper.chain.signer import load_signer
from keeper.cli.options import add_config_option
from keeper.core.config import config_path_from, load_config
from keeper.core.logs import display_url
from prover.settings import POLICY_PROVERS, ProverSettings


def stone_line(prover: ProverSettings) -> str:
    """Which Stone the keeper will run: path, build generation, parameter set."""
    build = prover.stone_build
    if "stone" not in POLICY_PROVERS[prover.policy]:
        return f"stone: not used by policy {prover.policy}"
    if build is None:
        return (
            f"stone: none found, so policy {prover.policy} proves with Atlantic only "
            "(stone_only: cannot prove); `make setup` installs Stone v3 into .tools/stone, "
            "or set prover.stone_prover_path"
        )
    if build.generation == "missing":
        return (
            f"stone: {build.prover} does not exist (prover.stone_prover_path): fix the path, "
            "or remove it to use the Stone `make setup` installs"
        )
    return (
        f"stone: {build.prover} ({build.generation}; found in {build.source}), "
        f"parameter set {prover.parameter_set}"
    )


def register(sub: Any) -> None:
    parser = sub.add_parser("config", help="check or show the operator configuration")
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION")
    actions.required = True
    check = actions.add_parser(
        "check",
        help="validate the config and load the account key (keystore or private-key "
        "secret) as `run` will; exit 78 with one line per problem",
    )
    add_config_option(check)
    check.set_defaults(handler=_check)
    show = actions.add_parser("show", help="print the effective config, secrets redacted")
    add_config_option(show)
    show.set_defaults(handler=_show)


def _check(args: argparse.Namespace) -> int:
    path = config_path_from(args.config, os.environ)
    cfg = load_config(path, os.environ)
    # `run` cannot sign without the key: load it now (SignerError, exit 78), never print it.
    load_signer(cfg.chain, cfg.secrets)
    secrets = [name for name, value in cfg.redacted()["secrets"].items() if value == "<set>"]
    print(
        f"config ok: {path or 'environment only'}; chain {cfg.chain.chain_id} at "
        f"{display_url(cfg.chain.rpc_url)}; router {cfg.chain.router_address}; "
        f"stream {cfg.stream.source}; "
        f"prover {cfg.prover.policy}; store {cfg.store.path}; "
        f"secrets: {', '.join(secrets) or 'none'}; account key loaded"
    )
    print(stone_line(cfg.prover))
    return 0


def _show(args: argparse.Namespace) -> int:
    cfg = load_config(config_path_from(args.config, os.environ), os.environ)
    print(json.dumps(cfg.redacted(), indent=2))
    return 0
