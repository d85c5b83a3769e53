"""``obsqra-keeper deploy``: declare, deploy and configure RiskEngine and StrategyRouterV2
on Sepolia, mainnet or any Starknet node, signing with an encrypted keystore."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keeper.cli.options import address_arg, felt_arg
from keeper.core.errors import UsageError

if TYPE_CHECKING:
    from keeper.chain.deploy import DeployResult, PlannedTx

NAMED_NETWORKS = ("sepolia", "mainnet")
RPC_ENV = "STARKNET_RPC"  # starkli's variable for the node URL
EXIT_DRY_RUN_PROBLEMS = 1


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "deploy",
        help="declare, deploy and configure the contracts on Sepolia, mainnet or a URL",
        description=(
            "Declare RiskEngine and StrategyRouterV2 (when the chain does not know them), "
            "deploy them at deterministic addresses, and configure them: the router's whole "
            "configuration (keepers, Integrity's FactRegistry of the chain, the allocation "
            "program's hashes, verifier pins, security bits, timelock delay) goes into its "
            "constructor. Signs with an encrypted keystore whose password is the "
            "keystore_password credential ($CREDENTIALS_DIRECTORY/keystore_password or "
            "KEEPER_KEYSTORE_PASSWORD_FILE). The record (--out) is written after every "
            "step: running the same command again finishes an interrupted deployment and "
            "changes nothing on a complete one. --dry-run estimates every transaction and "
            "sends none."
        ),
    )
    parser.add_argument(
        "--network",
        required=True,
        metavar="sepolia|mainnet|URL",
        help="a named network (its node via --rpc-url or $STARKNET_RPC; the chain id is "
        "checked) or the JSON-RPC URL of any node (then --fact-registry, --params and "
        "--out are required)",
    )
    parser.add_argument(
        "--rpc-url",
        metavar="URL",
        help=f"JSON-RPC URL for a named network (default: ${RPC_ENV}); only its "
        "scheme://host[:port] is ever printed",
    )
    parser.add_argument(
        "--account", required=True, type=address_arg, help="the deploying account's address"
    )
    parser.add_argument(
        "--keystore",
        required=True,
        type=Path,
        metavar="PATH",
        help="the account's encrypted keystore (starkli signer keystore new)",
    )
    parser.add_argument(
        "--params",
        type=Path,
        metavar="PATH",
        help="deploy parameters TOML (default: config/deploy.NETWORK.toml)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="deployment record to read and write (default: deployments/NETWORK.json)",
    )
    parser.add_argument(
        "--contracts-dir",
        type=Path,
        default=Path("contracts/target"),
        help="compiled contracts (scripts/build_contracts.sh; default: %(default)s)",
    )
    _add_safety_options(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read the chain and estimate every transaction; send nothing, write nothing",
    )
    parser.set_defaults(handler=_deploy)


def _add_safety_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fact-registry",
        type=address_arg,
        metavar="0x…",
        help="the FactRegistry the router trusts (default: Integrity's of the chain; "
        "required for a URL network)",
    )
    parser.add_argument(
        "--allow-other-fact-registry",
        action="store_true",
        help="accept a --fact-registry that is not Integrity's known one on this chain",
    )
    parser.add_argument(
        "--allow-short-governance-delay",
        action="store_true",
        help="accept router.governance_delay_s below 2 days on mainnet",
    )
    parser.add_argument(
        "--program-hash",
        type=felt_arg,
        help="accepted direct-proof program hash (default: computed from prover/)",
    )
    parser.add_argument(
        "--child-program-hash",
        type=felt_arg,
        help="accepted bootloaded child program hash (default: computed from prover/)",
    )
    parser.add_argument(
        "--max-fee-fri",
        type=_positive_int,
        metavar="FRI",
        help="refuse a transaction whose fee bound exceeds this (default: [fees] "
        "max_fee_fri of --params, else 10 STRK)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def resolve_network(
    network: str, rpc_url: str | None, environ: Mapping[str, str]
) -> tuple[str, str]:
    """(network name or 'url', RPC URL) from --network and --rpc-url / $STARKNET_RPC."""
    if network.startswith(("http://", "https://")):
        if rpc_url is not None:
            raise UsageError("--network is a URL already: leave out --rpc-url")
        return "url", network
    if network not in NAMED_NETWORKS:
        raise UsageError(
            f"--network {network!r} is not sepolia, mainnet or an http(s):// URL of a node"
        )
    url = rpc_url or environ.get(RPC_ENV)
    if not url:
        raise UsageError(
            f"--network {network} needs its node's JSON-RPC URL: --rpc-url URL or ${RPC_ENV}"
        )
    if not url.startswith(("http://", "https://")):
        raise UsageError("--rpc-url must be an http:// or https:// URL")
    return network, url


def _paths(args: argparse.Namespace, network: str) -> tuple[Path, Path]:
    """(params file, record file): per network by default; a URL network names both."""
    if network == "url" and (args.params is None or args.out is None):
        raise UsageError(
            "a network given by URL needs --params and --out (the defaults are per named "
            "network: config/deploy.sepolia.toml, deployments/sepolia.json)"
        )
    params = args.params or Path(f"config/deploy.{network}.toml")
    out = args.out or Path(f"deployments/{network}.json")
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file path")
    return params, out


def _deploy(args: argparse.Namespace) -> int:
    from keeper.chain import deploy as core
    from keeper.chain.signer import load_keystore
    from keeper.core.config import load_secrets

    network, rpc_url = resolve_network(args.network, args.rpc_url, os.environ)
    params_path, out = _paths(args, network)
    params = core.load_deploy_params(params_path, core.NETWORK_PROFILE)
    artifacts = core.load_artifacts(args.contracts_dir, core.NETWORK_ARTIFACTS)
    program_hash, child_hash = args.program_hash, args.child_program_hash
    if program_hash is None or child_hash is None:
        default_direct, default_child = core.default_program_hashes()
        program_hash = default_direct if program_hash is None else program_hash
        child_hash = default_child if child_hash is None else child_hash
    if not args.keystore.is_file():
        raise UsageError(f"--keystore {args.keystore} is not a file")
    key_pair = load_keystore(args.keystore, load_secrets(os.environ))
    target = core.NetworkTarget(
        network=network,
        rpc_url=rpc_url,
        account=args.account,
        key_pair=key_pair,
        out_path=out,
        program_hash=program_hash,
        child_program_hash=child_hash,
        fact_registry=args.fact_registry,
        allow_other_registry=args.allow_other_fact_registry,
        allow_short_delay=args.allow_short_governance_delay,
        dry_run=args.dry_run,
        max_fee_fri=args.max_fee_fri,
    )

    def show(name: str, action: str) -> None:
        print(f"{action:>10}  {name}", file=sys.stderr, flush=True)

    result = asyncio.run(core.deploy_network(target, params, artifacts, on_step=show))
    code = _print_result(result, dry_run=args.dry_run, out=out)
    if args.dry_run and not _dry_run_funds(rpc_url, args.account, result, params.fees.multiplier):
        return EXIT_DRY_RUN_PROBLEMS
    return code


def _dry_run_funds(rpc_url: str, account: int, result: DeployResult, multiplier: float) -> bool:
    """Say whether ``account`` can pay for the dry run's transactions; False when not."""
    from keeper.chain.balance import TxFee, affordability, balance_at

    try:
        balance = asyncio.run(balance_at(rpc_url, account))
    except Exception as exc:  # noqa: BLE001 - the dry run's answer stands; this is advice
        print(
            f"dry run: the account's STRK balance could not be read ({type(exc).__name__})",
            file=sys.stderr,
        )
        return True
    fees = [
        None if tx.estimated_fee is None or tx.max_fee is None
        else TxFee(tx.estimated_fee, tx.max_fee)
        for tx in result.transactions
    ]
    verdict = affordability(balance, fees, multiplier)
    print(f"dry run: {verdict.describe(account)}", file=sys.stderr)
    return verdict.can_pay


def _print_result(result: DeployResult, *, dry_run: bool, out: Path) -> int:
    for line in transaction_lines(result.transactions, dry_run=dry_run):
        print(line)
    for name, address in result.addresses.items():
        later = " (not deployed yet)" if address in result.not_deployed else ""
        print(f"{name} {address:#066x}{later}")
    print(f"FactRegistry {result.deployment.fact_registry:#066x} (the router's: IntegrityGuard)")
    if not dry_run:
        print(f"deployment written to {out}", file=sys.stderr)
        return 0
    problems = [(i, tx) for i, tx in enumerate(result.transactions, 1) if tx.problem]
    if problems:
        first, tx = problems[0]
        print(
            f"dry run: {len(problems)} transaction(s) would be refused; a real run would "
            f"stop at transaction {first}: {tx.problem}",
            file=sys.stderr,
        )
        return EXIT_DRY_RUN_PROBLEMS
    print(f"dry run: nothing sent, {out} not written", file=sys.stderr)
    return 0


def transaction_lines(transactions: Sequence[PlannedTx], *, dry_run: bool) -> list[str]:
    """The run's transactions, numbered, with calldata summary and fee."""
    from keeper.store.cost_table import format_fee

    if not transactions:
        return ["no transaction needed" if dry_run else "no transaction sent"]
    title = "transactions (dry run: estimated, none sent):" if dry_run else "transactions sent:"
    lines = [title]
    total = 0
    for number, tx in enumerate(transactions, 1):
        lines.append(f"{number:>3}  {tx.kind:<8} {tx.target}")
        lines.append(f"       {tx.summary}")
        if tx.tx_hash is not None:
            fee = tx.actual_fee or 0
            total += fee
            lines.append(
                f"       tx {tx.tx_hash:#x}, block {tx.block_number}, fee {format_fee(fee, 'FRI')}"
            )
        elif tx.estimated_fee is not None and tx.max_fee is not None:
            total += tx.estimated_fee
            lines.append(
                f"       fee estimate {format_fee(tx.estimated_fee, 'FRI')} "
                f"(bound {format_fee(tx.max_fee, 'FRI')})"
            )
        if tx.note:
            lines.append(f"       {tx.note}")
        if tx.problem:
            lines.append(f"       REFUSED: {tx.problem}")
    what = "estimated" if dry_run else "paid"
    lines.append(f"total {what}: {format_fee(total, 'FRI')}")
    return lines
