"""Declare, deploy and configure the contracts on a starknet-devnet, idempotently.

The core is the real networks' (``keeper.chain.deploy``: declare what is missing, deploy
what is not at its address, converge every value through the router's constructor or
its timelock); a devnet adds:

- the signer is devnet's first predeployed account (``devnet_getPredeployedAccounts``),
  the owner of everything; role fields in the TOML name a predeployed account by index
  or give an address, and the oracle's initial metrics are sent from its own account;
- the router's fact registry (``[router] fact_registry`` or ``--fact-registry``):
  ``"dev"`` deploys the DevFactRegistry, a **trusted** stand-in that verifies nothing
  (its registrar records whatever it is told): for the dev prover only, which has no
  proofs. ``"integrity"`` deploys Integrity's real FactRegistry and verifier from their
  compiled classes (``keeper.devnet.integrity``; the devnet must run with
  ``DEVNET_ARGS``, which ``keeper.devnet.node.start_devnet`` always passes) and our
  IntegrityGuard driving that verifier, which the router trusts (as on Sepolia): for
  Stone proofs, verified on-chain;
- a random UDC salt per deployment unless one is given (tests deploy many fresh sets on
  one devnet), and a recorded address that does not hold the class any more (a
  restarted devnet) is simply deployed again.

Contracts are read from ``contracts/target`` (``scripts/build_contracts.sh``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from keeper.chain.deploy import (
    DEVNET_PROFILE,
    GUARD,
    MODEL_PARAM_NAMES,
    PIN_KEYS,
    PROTOCOL_FIELDS,
    ROUTER_LIMITS,
    ContractArtifact,
    DeployContext,
    Deployment,
    DeployParams,
    GuardPin,
    RecordFile,
    Report,
    Roles,
    Sender,
    call_view,
    class_declared,
    class_hash_at,
    compiled_class_hash,
    converge,
    default_program_hashes,
    ensure_contract,
    ensure_declared,
    ensure_guard,
    invoke,
    make_call,
    read_deployment,
    require_guard_verifier,
    router_constructor_calldata,
    selector,
    settle_pending,
    sierra_class_hash,
    wanted_governance,
    write_deployment,
)
from keeper.chain.deploy import load_artifacts as _load_artifacts
from keeper.chain.deploy import load_deploy_params as _load_params
from keeper.chain.deploy import parse_deploy_params as _parse_params
from keeper.core.errors import ChainError, UsageError
from keeper.core.logs import display_url

__all__ = [
    "ARTIFACT_NAMES",
    "CONTRACT_NAMES",
    "FACT_REGISTRY_CHOICES",
    "MODEL_PARAM_NAMES",
    "PIN_KEYS",
    "PROTOCOL_FIELDS",
    "ROUTER_LIMITS",
    "ContractArtifact",
    "DeployParams",
    "Deployment",
    "DevnetAccount",
    "Report",
    "call_view",
    "class_declared",
    "class_hash_at",
    "compiled_class_hash",
    "default_program_hashes",
    "deploy_devnet",
    "invoke",
    "load_artifacts",
    "load_deploy_params",
    "make_account",
    "make_call",
    "parse_deploy_params",
    "predeployed_accounts",
    "read_deployment",
    "router_constructor_calldata",
    "selector",
    "sierra_class_hash",
    "wanted_governance",
    "write_deployment",
]

CONTRACT_NAMES = ("RiskEngine", "DevFactRegistry", "StrategyRouterV2")
# What a devnet deploy may declare: the guard only with Integrity ('integrity').
ARTIFACT_NAMES = (*CONTRACT_NAMES, GUARD)
FACT_REGISTRY_CHOICES = ("dev", "integrity")
# Record names of Integrity's contracts when a devnet deploys them.
INTEGRITY_RECORD_NAMES = ("IntegrityFactRegistry", "IntegrityVerifier", "IntegrityOods")


def load_deploy_params(path: Path) -> DeployParams:
    """The devnet deploy TOML (config/deploy.devnet.toml); every problem at once."""
    return _load_params(path, DEVNET_PROFILE)


def parse_deploy_params(raw: Mapping[str, Any], *, source: str = "") -> DeployParams:
    return _parse_params(raw, source=source, profile=DEVNET_PROFILE)


def load_artifacts(
    target_dir: Path, names: Sequence[str] = ARTIFACT_NAMES
) -> dict[str, ContractArtifact]:
    return _load_artifacts(target_dir, names)


# ---------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class DevnetAccount:
    address: int
    private_key: int


def predeployed_accounts(rpc_url: str) -> list[DevnetAccount]:
    """devnet_getPredeployedAccounts over JSON-RPC."""
    payload = {"jsonrpc": "2.0", "id": 1, "method": "devnet_getPredeployedAccounts"}
    try:
        reply = httpx.post(rpc_url, json=payload, timeout=30).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ChainError(f"cannot reach starknet-devnet at {display_url(rpc_url)}: {exc}") from exc
    if "result" not in reply:
        raise ChainError(
            f"{display_url(rpc_url)} did not answer devnet_getPredeployedAccounts "
            f"({reply.get('error')}): "
            "is it a starknet-devnet?"
        )
    return [
        DevnetAccount(int(a["address"], 16), int(a["private_key"], 16)) for a in reply["result"]
    ]


def make_account(rpc_url: str, account: DevnetAccount, chain_id: int) -> Any:
    from starknet_py.net.account.account import Account
    from starknet_py.net.full_node_client import FullNodeClient
    from starknet_py.net.signer.key_pair import KeyPair

    return Account(
        address=account.address,
        client=FullNodeClient(node_url=rpc_url),
        key_pair=KeyPair.from_private_key(account.private_key),
        chain=chain_id,
    )


def _resolve(ref: int | str | None, accounts: Sequence[DevnetAccount], where: str) -> int:
    if ref is None:
        ref = 0
    if isinstance(ref, str):
        return int(ref, 16)
    if ref >= len(accounts):
        raise UsageError(
            f"{where} names predeployed account {ref} but the devnet has {len(accounts)}"
        )
    return accounts[ref].address


# ---------------------------------------------------------------------------- deploy


async def deploy_devnet(
    rpc_url: str,
    params: DeployParams,
    artifacts: Mapping[str, ContractArtifact],
    out_path: Path | None,
    *,
    program_hash: int,
    child_program_hash: int,
    salt: int | None = None,
    on_step: Callable[[str, str], None] | None = None,
    fact_registry: str | None = None,
    integrity_classes: Path | None = None,
) -> tuple[Deployment, Report]:
    """Bring the devnet to the state ``params`` describes; return it and what was done.

    ``out_path`` (if given) is read first and rewritten after every step, so an
    interrupted run resumes. ``salt`` fixes the UDC salt base (default: random).
    ``fact_registry`` ('dev' or 'integrity') overrides ``params.fact_registry``;
    ``integrity_classes`` is where Integrity's classes are (default:
    ``keeper.devnet.integrity.classes_dir()``).
    """
    from starknet_py.net.full_node_client import FullNodeClient

    choice = fact_registry or params.fact_registry
    if choice not in FACT_REGISTRY_CHOICES:
        raise UsageError(f"fact registry {choice!r} is not one of {FACT_REGISTRY_CHOICES}")
    classes = None
    if choice == "integrity":  # before anything is sent: the classes must be there
        classes = integrity_classes or _integrity_classes()
    accounts = predeployed_accounts(rpc_url)
    if not accounts:
        raise ChainError(
            f"{display_url(rpc_url)} has no predeployed accounts (start devnet with --accounts)"
        )
    client = FullNodeClient(node_url=rpc_url)
    chain_id = int(await client.get_chain_id(), 16)
    block = await client.get_block(block_number="latest")
    ctx = _context(rpc_url, client, chain_id, str(block.starknet_version), accounts[0], params)
    ctx.on_step = on_step
    ctx.salt = salt if salt is not None else params.salt
    _resume(ctx, out_path, chain_id)
    await settle_pending(ctx)

    owner = accounts[0].address
    if classes is None:
        registrar = _resolve(params.registrar, accounts, "roles.registrar")
        registry = await _dev_fact_registry(ctx, artifacts, registrar)
    else:
        registry = await _integrity_guard(ctx, artifacts, params, owner, classes)
    oracle = _resolve(params.oracle, accounts, "roles.oracle")
    roles = Roles(
        owner=owner,
        oracle=oracle,
        keepers=tuple(_resolve(k, accounts, "roles.keepers") for k in params.keepers),
    )
    await converge(
        ctx,
        params,
        artifacts,
        roles=roles,
        registry=registry,
        program_hash=program_hash,
        child_program_hash=child_program_hash,
        oracle_sender=_oracle_sender(ctx, rpc_url, chain_id, accounts, oracle, params),
    )
    return ctx.record, ctx.report


def _context(
    rpc_url: str,
    client: Any,
    chain_id: int,
    starknet_version: str,
    deployer: DevnetAccount,
    params: DeployParams,
) -> DeployContext:
    record = Deployment(chain_id=chain_id, rpc_url=display_url(rpc_url), deployer=deployer.address)
    file = RecordFile(record, None)
    sender = Sender(
        make_account(rpc_url, deployer, chain_id),
        chain_id=chain_id,
        fees=params.fees,
        dry_run=False,
        receipt_timeout_s=params.receipt_timeout_s,
        journal=file.journal,
        planned=[],
    )
    return DeployContext(
        client=client,
        sender=sender,
        file=file,
        starknet_version=starknet_version,
        redeploy_changed=True,  # a devnet restarts empty: deploy again
    )


def _resume(ctx: DeployContext, out_path: Path | None, chain_id: int) -> None:
    """Write the record to ``out_path``, continuing the one there (its contracts, a
    transaction in flight) when it is of this chain."""
    ctx.file.path = out_path
    previous = read_deployment(out_path) if out_path is not None else None
    if previous is not None and previous.chain_id == chain_id:
        ctx.record.contracts = dict(previous.contracts)
        ctx.record.block_number = previous.block_number
        ctx.record.pending_tx = previous.pending_tx


def _oracle_sender(
    ctx: DeployContext,
    rpc_url: str,
    chain_id: int,
    accounts: Sequence[DevnetAccount],
    oracle: int,
    params: DeployParams,
) -> Sender | None:
    """The oracle's own sender (its initial metrics), when it is a predeployed account."""
    if oracle == ctx.sender.address:
        return ctx.sender
    account = next((a for a in accounts if a.address == oracle), None)
    if account is None:
        return None
    return Sender(
        make_account(rpc_url, account, chain_id),
        chain_id=chain_id,
        fees=params.fees,
        dry_run=False,
        receipt_timeout_s=params.receipt_timeout_s,
        journal=ctx.file.journal,
        planned=ctx.sender.planned,
    )


async def _dev_fact_registry(
    ctx: DeployContext, artifacts: Mapping[str, ContractArtifact], registrar: int
) -> int:
    """The DevFactRegistry with ``registrar``: trusted, for the dev prover only."""
    class_hash = await ensure_declared(ctx, artifacts["DevFactRegistry"])
    registry = await ensure_contract(
        ctx, "DevFactRegistry", class_hash, [registrar], f"constructor(registrar {registrar:#x})"
    )
    (current,) = await call_view(ctx.client, registry, "get_registrar")
    if current != registrar:
        raise ChainError(
            f"DevFactRegistry {registry:#x} has registrar {current:#x}, not the wanted "
            f"{registrar:#x}; only the registrar can change it: deploy afresh (move the "
            "deployment file away)"
        )
    ctx.step(f"DevFactRegistry.registrar = {registrar:#x}", "unchanged")
    ctx.record.roles["registrar"] = hex(registrar)
    return registry


def _integrity_classes() -> Path:
    from keeper.devnet import integrity

    directory = integrity.classes_dir()
    if directory is None:
        raise UsageError(
            "fact_registry 'integrity' needs Integrity's compiled classes "
            f"({integrity.DEFAULT_CLASSES_DIR}, or set {integrity.CLASSES_ENV}); without "
            "them only 'dev' (the DevFactRegistry, for the dev prover) can be deployed"
        )
    return directory


async def _integrity_guard(
    ctx: DeployContext,
    artifacts: Mapping[str, ContractArtifact],
    params: DeployParams,
    owner: int,
    directory: Path,
) -> int:
    """Integrity's real FactRegistry and verifier, from the compiled classes, and our
    guard driving that verifier under the router's direct pin: the router's registry."""
    direct = params.pins.get("direct_verifier", ())
    if len(direct) != 4:
        raise UsageError(
            "fact_registry 'integrity' needs router.direct_verifier: the IntegrityGuard "
            "records Stone proofs under that pin"
        )
    a, b, c, d = direct
    registry = await _integrity(ctx, owner, directory)
    # As on a real network: the verifier Integrity's registry has for the pin's preset.
    verifier = await require_guard_verifier(ctx.client, registry, a, b)
    if GUARD not in artifacts:
        raise UsageError(f"no {GUARD} among the compiled contracts: run make contracts")
    return await ensure_guard(
        ctx,
        artifacts[GUARD],
        owner=owner,
        pin=GuardPin(verifier, (a, b, c, d)),
        delay_s=params.router["governance_delay_s"],
    )


async def _integrity(ctx: DeployContext, owner: int, directory: Path) -> int:
    """Integrity's real FactRegistry and verifier, from the compiled classes."""
    from starknet_py.net.client_errors import ClientError

    from keeper.devnet import integrity

    try:
        deployed = await integrity.deploy_integrity(
            ctx.sender.account, directory, starknet_version=ctx.starknet_version, owner=owner
        )
    except ClientError as exc:
        hint = ""
        if "sierra" in exc.message.lower() or "size" in exc.message.lower():
            hint = (
                f" (start the devnet with {' '.join(integrity.DEVNET_ARGS)}: Integrity's "
                "verifier exceeds devnet's default Sierra length)"
            )
        raise ChainError(f"deploying Integrity failed: {exc.message}{hint}") from None
    addresses = (deployed.fact_registry, deployed.verifier, deployed.oods)
    for name, address in zip(INTEGRITY_RECORD_NAMES, addresses, strict=True):
        class_hash = await class_hash_at(ctx.client, address) or 0
        ctx.record.contracts[name] = {"address": address, "class_hash": class_hash}
    ctx.file.save()
    ctx.step(
        f"Integrity FactRegistry {deployed.fact_registry:#x} (verifier {deployed.verifier:#x} "
        f"for {integrity.PRESET})",
        "ready",
    )
    return deployed.fact_registry
