"""``obsqra-keeper deploy`` on a real network (Sepolia, mainnet, any RPC URL): chain checks,
the router's fact registry (our IntegrityGuard over Integrity's verifier), the mainnet
delay floor, the keystore signer's account."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.chain.codec import chain_name
from keeper.chain.deploy_artifacts import (
    ContractArtifact,
    call_view,
    class_hash_at,
)
from keeper.chain.deploy_guard import GUARD, GuardPin, ensure_guard, require_guard_verifier
from keeper.chain.deploy_params import (
    MAINNET,
    MAINNET_MIN_GOVERNANCE_DELAY_S,
    NETWORKS,
    PIN_KEYS,
    DeployParams,
    FeePolicy,
)
from keeper.chain.deploy_record import (
    Deployment,
    Report,
    Step,
    read_deployment,
)
from keeper.chain.deploy_run import (
    DeployContext,
    RecordFile,
    Roles,
    converge,
    settle_pending,
)
from keeper.chain.deploy_tx import (
    PlannedTx,
    Sender,
)
from keeper.chain.integrity import known_fact_registry, verifier_preset
from keeper.chain.reverts import decode_revert_reason, error_text
from keeper.core.errors import ChainError, ConfigError, UsageError
from keeper.core.logs import display_url

# What a real network deploy declares and deploys (the router's registry is the guard).
NETWORK_ARTIFACTS = ("RiskEngine", "StrategyRouterV2", GUARD)


def check_network_chain(network: str, chain: str) -> None:
    """``--network sepolia|mainnet`` must reach a node of that chain."""
    expected = NETWORKS.get(network)
    if expected is not None and chain != expected:
        raise UsageError(
            f"--network {network} expects chain {expected}, but the node reports {chain}: "
            "check --rpc-url"
        )


def choose_fact_registry(
    chain: str, *, explicit: int | None, from_params: str, url_network: bool, allow_other: bool
) -> int:
    """Integrity's FactRegistry whose verifier the guard will drive: Integrity's of the
    chain, unless an explicit one is given (a URL network must give one); a registry that
    is not Integrity's known one on a known chain needs ``allow_other``. The router
    trusts the guard, never this registry's labels (issue 18)."""
    known = known_fact_registry(chain)
    if explicit is None and from_params.startswith("0x"):
        explicit = int(from_params, 16)
    if explicit is None:
        if url_network or known is None:
            raise UsageError(
                f"no FactRegistry for chain {chain}: a network given by URL needs "
                "--fact-registry 0x… (Integrity's FactRegistry on that chain; known: "
                "SN_SEPOLIA and SN_MAIN with --network sepolia|mainnet)"
            )
        return known
    if known is not None and explicit != known and not allow_other:
        raise UsageError(
            f"--fact-registry {explicit:#x} is not Integrity's FactRegistry on {chain} "
            f"({known:#x}); the router would accept facts from it. Pass "
            "--allow-other-fact-registry only if you mean exactly this registry"
        )
    return explicit


def check_governance_delay(chain: str, delay_s: int, *, allow_short: bool) -> None:
    """On SN_MAIN users get at least MAINNET_MIN_GOVERNANCE_DELAY_S of notice."""
    if chain == MAINNET and delay_s < MAINNET_MIN_GOVERNANCE_DELAY_S and not allow_short:
        raise ConfigError(
            [
                f"router.governance_delay_s = {delay_s} is below the mainnet floor of "
                f"{MAINNET_MIN_GOVERNANCE_DELAY_S} s (2 days): every change to what the router "
                "accepts must be public this long before it applies. Pass "
                "--allow-short-governance-delay only if you mean it"
            ]
        )


@dataclass(frozen=True)
class NetworkTarget:
    """Everything ``deploy_network`` needs besides the params and the artifacts."""

    network: str  # 'sepolia', 'mainnet' or 'url'
    rpc_url: str
    account: int
    key_pair: Any  # starknet_py KeyPair
    out_path: Path
    program_hash: int
    child_program_hash: int
    fact_registry: int | None = None
    allow_other_registry: bool = False
    allow_short_delay: bool = False
    dry_run: bool = False
    max_fee_fri: int | None = None  # overrides [fees] max_fee_fri


@dataclass
class DeployResult:
    deployment: Deployment
    report: Report
    transactions: list[PlannedTx]
    addresses: dict[str, int]  # RiskEngine, StrategyRouterV2: deployed, found or planned
    not_deployed: set[int]  # dry run: the addresses a real run would deploy to


async def deploy_network(
    target: NetworkTarget,
    params: DeployParams,
    artifacts: Mapping[str, ContractArtifact],
    *,
    on_step: Step | None = None,
) -> DeployResult:
    """Bring a real network (or any node given by URL) to the state ``params`` describes.

    Signs with ``target.key_pair`` as ``target.account`` (the owner of what it deploys);
    never deploys the DevFactRegistry. The router trusts ``choose_fact_registry``'s."""
    from aiohttp import ClientError as HttpError
    from starknet_py.net.client_errors import ClientError

    shown = display_url(target.rpc_url)
    try:
        return await _deploy_network(target, params, artifacts, on_step)
    except HttpError as exc:
        raise ChainError(
            f"cannot reach the node at {shown} ({type(exc).__name__}); check --rpc-url",
            code="rpc_unreachable",
        ) from None
    except ClientError as exc:
        raise ChainError(
            f"the node at {shown} refused a request: {decode_revert_reason(error_text(exc))}"
        ) from None
    except TimeoutError:
        raise ChainError(
            f"the node at {shown} did not answer in time; check it (or the provider) is up",
            code="rpc_unreachable",
        ) from None


async def _deploy_network(
    target: NetworkTarget,
    params: DeployParams,
    artifacts: Mapping[str, ContractArtifact],
    on_step: Step | None,
) -> DeployResult:
    from starknet_py.net.account.account import Account
    from starknet_py.net.full_node_client import FullNodeClient

    client = FullNodeClient(node_url=target.rpc_url)
    chain_id = int(await client.get_chain_id(), 16)
    chain = chain_name(chain_id)
    check_network_chain(target.network, chain)
    registry = choose_fact_registry(
        chain,
        explicit=target.fact_registry,
        from_params=params.fact_registry,
        url_network=target.network == "url",
        allow_other=target.allow_other_registry,
    )
    check_governance_delay(
        chain, params.router["governance_delay_s"], allow_short=target.allow_short_delay
    )
    roles = Roles(
        owner=target.account,
        oracle=_as_address(params.oracle),
        keepers=tuple(_as_address(k) for k in params.keepers),
    )
    direct_pin = _guard_pin_config(params)
    await _preflight(client, target.account, registry, params)
    verifier = await require_guard_verifier(client, registry, direct_pin[0], direct_pin[1])
    record = _network_record(target, chain_id, params)
    account = Account(
        address=target.account, client=client, key_pair=target.key_pair, chain=chain_id
    )
    fees = params.fees
    if target.max_fee_fri is not None:
        fees = FeePolicy(fees.multiplier, target.max_fee_fri)
    planned: list[PlannedTx] = []
    file = RecordFile(record, target.out_path, dry_run=target.dry_run)
    sender = Sender(
        account,
        chain_id=chain_id,
        fees=fees,
        dry_run=target.dry_run,
        receipt_timeout_s=params.receipt_timeout_s,
        journal=file.journal,
        planned=planned,
    )
    ctx = DeployContext(
        client=client,
        sender=sender,
        file=file,
        starknet_version=str((await client.get_block(block_number="latest")).starknet_version),
        on_step=on_step,
        salt=params.salt if params.salt is not None else 0,
    )
    ctx.step(f"chain {chain} at {display_url(target.rpc_url)}", "checked")
    ctx.step(f"Integrity FactRegistry {registry:#x}: verifier {verifier:#x}", "checked")
    await settle_pending(ctx)
    guard = await ensure_guard(
        ctx,
        artifacts[GUARD],
        owner=target.account,
        pin=GuardPin(verifier, direct_pin),
        delay_s=params.router["governance_delay_s"],
    )
    await converge(
        ctx,
        params,
        artifacts,
        roles=roles,
        registry=guard,
        program_hash=target.program_hash,
        child_program_hash=target.child_program_hash,
        oracle_sender=ctx.sender if roles.oracle == target.account else None,
    )
    return DeployResult(record, ctx.report, planned, ctx.addresses, set(ctx.would_deploy))


def _guard_pin_config(params: DeployParams) -> tuple[str, str, str, str]:
    """The guard records direct Stone proofs under the router's direct pin; the
    bootloaded path (Atlantic's facts, registered in Integrity's registry under a label
    anyone can forge) stays closed until it can be trusted."""
    direct = params.pins.get("direct_verifier", ())
    if len(direct) != 4:
        raise UsageError(
            "router.direct_verifier is unset: the IntegrityGuard (the router's fact registry) "
            "records Stone proofs under that pin; set it (e.g. [\"small\", \"keccak_160_lsb\", "
            "\"stone6\", \"strict\"])"
        )
    if params.pins.get("bootloaded_verifier", ()):
        raise UsageError(
            "router.bootloaded_verifier must be [] on a real network: Atlantic's facts are "
            "registered in Integrity's public FactRegistry, whose configuration label anyone "
            "can forge (issue 18), and the guard does not verify Atlantic's proofs. The "
            "bootloaded path accepts nothing until it can be trusted"
        )
    a, b, c, d = direct
    return (a, b, c, d)


def _as_address(ref: int | str) -> int:
    if isinstance(ref, str):
        return int(ref, 16)
    raise UsageError(f"account index {ref} names a devnet predeployed account: give an address")


def _network_record(target: NetworkTarget, chain_id: int, params: DeployParams) -> Deployment:
    previous = read_deployment(target.out_path)
    if previous is not None and previous.chain_id != chain_id:
        raise UsageError(
            f"{target.out_path} records a deployment on {chain_name(previous.chain_id)}, but "
            f"the node is {chain_name(chain_id)}: give the record of this network (--out)"
        )
    if previous is not None:
        previous.rpc_url = display_url(target.rpc_url)
        return previous
    return Deployment(
        chain_id=chain_id,
        rpc_url=display_url(target.rpc_url),
        deployer=target.account,
        network=target.network,
        salt=params.salt if params.salt is not None else 0,
    )


async def _preflight(client: Any, account: int, registry: int, params: DeployParams) -> None:
    """What must hold before anything is estimated: the account and the Universal
    Deployer exist, and the registry is a contract with a verifier for each pin."""
    from starknet_py.constants import DEFAULT_DEPLOYER_ADDRESS

    if await class_hash_at(client, account) is None:
        raise UsageError(
            f"no account contract at --account {account:#x} on this chain: deploy the account "
            "first (e.g. starkli account deploy), or check the address"
        )
    udc = int(DEFAULT_DEPLOYER_ADDRESS, 16)
    if await class_hash_at(client, udc) is None:
        raise ChainError(f"this chain has no Universal Deployer at {udc:#x}: cannot deploy")
    if await class_hash_at(client, registry) is None:
        raise UsageError(f"no contract at the fact registry {registry:#x} on this chain")
    for key in PIN_KEYS:
        pin = params.pins.get(key, ())
        if pin:
            await _require_verifier(client, registry, pin[0], pin[1], key)


async def _require_verifier(client: Any, registry: int, layout: str, hasher: str, key: str) -> None:
    from starknet_py.net.client_errors import ClientError

    try:
        preset = verifier_preset(layout, hasher)
    except ValueError as exc:
        raise ConfigError([f"router.{key}: {exc}"]) from None
    try:
        (verifier,) = await call_view(client, registry, "get_verifier_address", preset)
    except (ClientError, ValueError):
        verifier = 0
    if not verifier:
        raise UsageError(
            f"the fact registry {registry:#x} has no Integrity verifier for ({layout}, "
            f"{hasher}) (router.{key}): the router could never accept a proof on that path. "
            "Is it Integrity's FactRegistry? (A DevFactRegistry verifies nothing and is for "
            "a devnet only.)"
        )
