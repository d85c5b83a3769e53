"""``obsqra-keeper devnet deploy``: declare, deploy and configure the contracts on a devnet."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from keeper.cli.options import felt_arg


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "devnet",
        help="local starknet-devnet helpers (deploy the contracts)",
        description="Local starknet-devnet helpers.",
    )
    devnet_sub = parser.add_subparsers(dest="devnet_command", metavar="DEVNET_COMMAND")
    devnet_sub.required = True
    deploy = devnet_sub.add_parser(
        "deploy",
        help="declare, deploy and configure RiskEngine, StrategyRouterV2 and a fact registry",
        description=(
            "Declare and deploy RiskEngine, StrategyRouterV2 and the router's fact registry "
            "on a starknet-devnet with its first predeployed account, then set roles, "
            "parameters, accepted program hashes and initial metrics. The registry is the "
            "DevFactRegistry (trusted: it verifies nothing; for the dev prover) or "
            "Integrity's real FactRegistry and verifier from their compiled classes (for "
            "Stone proofs). Safe to run again: it reports what already exists."
        ),
    )
    deploy.add_argument("--rpc-url", required=True, help="devnet JSON-RPC URL")
    deploy.add_argument(
        "--params",
        type=Path,
        default=Path("config/deploy.devnet.toml"),
        help="deployment parameters TOML (default: %(default)s)",
    )
    deploy.add_argument(
        "--out",
        type=Path,
        default=Path("deployments/devnet.json"),
        help="deployment record to read and write (default: %(default)s)",
    )
    deploy.add_argument(
        "--contracts-dir",
        type=Path,
        default=Path("contracts/target"),
        help="compiled contracts (scripts/build_contracts.sh; default: %(default)s)",
    )
    deploy.add_argument(
        "--fact-registry",
        choices=("dev", "integrity"),
        help="the router's registry: dev = DevFactRegistry (trusted, dev prover only), "
        "integrity = Integrity's FactRegistry from ../shared/integrity/classes or "
        "$INTEGRITY_CLASSES_DIR (default: [router] fact_registry of --params, else dev)",
    )
    deploy.add_argument(
        "--program-hash",
        type=felt_arg,
        help="accepted direct-proof program hash (default: computed from prover/)",
    )
    deploy.add_argument(
        "--child-program-hash",
        type=felt_arg,
        help="accepted bootloaded child program hash (default: computed from prover/)",
    )
    deploy.set_defaults(handler=_deploy)


def _deploy(args: argparse.Namespace) -> int:
    from keeper.devnet import deploy as devnet_deploy

    params = devnet_deploy.load_deploy_params(args.params)
    artifacts = devnet_deploy.load_artifacts(args.contracts_dir)
    program_hash, child_hash = args.program_hash, args.child_program_hash
    if program_hash is None or child_hash is None:
        default_direct, default_child = devnet_deploy.default_program_hashes()
        program_hash = default_direct if program_hash is None else program_hash
        child_hash = default_child if child_hash is None else child_hash

    def show(name: str, action: str) -> None:
        print(f"{action:>10}  {name}", file=sys.stderr)

    deployment, _ = asyncio.run(
        devnet_deploy.deploy_devnet(
            args.rpc_url,
            params,
            artifacts,
            args.out,
            program_hash=program_hash,
            child_program_hash=child_hash,
            on_step=show,
            fact_registry=args.fact_registry,
        )
    )
    for name, entry in deployment.contracts.items():
        print(f"{name} {entry['address']:#066x}")
    print(f"deployment written to {args.out}", file=sys.stderr)
    return 0
