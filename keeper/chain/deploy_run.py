"""One deploy run: declare what is missing, deploy what is not at its address, converge
RiskEngine's and the router's values (constructor or timelock), settle a transaction an
interrupted run left in flight."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeper.chain.codec import decode_short_string, encode_short_string
from keeper.chain.deploy_artifacts import (
    ContractArtifact,
    call_view,
    class_declared,
    class_hash_at,
    compiled_class_hash,
    make_call,
    sierra_class_hash,
)
from keeper.chain.deploy_params import (
    PIN_KEYS,
    PIN_PATHS,
    DeployParams,
)
from keeper.chain.deploy_record import (
    Deployment,
    Report,
    Step,
    write_deployment,
)
from keeper.chain.deploy_tx import (
    Sender,
    wait_for_receipt,
)
from keeper.chain.governance import (
    KEEPER_PROPOSAL,
    PIN_FIELDS,
    PROPOSAL_FIELDS,
    GovernanceParams,
    PendingChange,
)
from keeper.chain.reverts import TXN_HASH_NOT_FOUND, decode_revert_reason, rpc_code
from keeper.core.errors import ChainError, UsageError

# What a real network gets; a devnet adds the DevFactRegistry (keeper.devnet.deploy).
NETWORK_CONTRACTS = ("RiskEngine", "StrategyRouterV2")
_SALT_DOMAIN = encode_short_string("obsqra-keeper deploy")


# ---------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Roles:
    owner: int
    oracle: int
    keepers: tuple[int, ...]


@dataclass
class RecordFile:
    """The record and where it lives; written after every step (never in a dry run)."""

    record: Deployment
    path: Path | None
    dry_run: bool = False

    def save(self) -> None:
        if self.path is not None and not self.dry_run:
            write_deployment(self.path, self.record)

    def journal(self, pending: dict[str, Any] | None) -> None:
        self.record.pending_tx = pending
        self.save()


@dataclass
class DeployContext:
    """One run: the node, the deployer's ``Sender``, the record file, the report."""

    client: Any
    sender: Sender
    file: RecordFile
    starknet_version: str
    on_step: Step | None = None
    salt: int | None = None  # None: a random salt per deployment (devnet)
    # A recorded address holding another class: deploy anew (devnet) or refuse.
    redeploy_changed: bool = False
    report: Report = field(default_factory=list)
    would_declare: set[int] = field(default_factory=set)  # dry run: class hashes
    would_deploy: dict[int, str] = field(default_factory=dict)  # dry run: address -> name
    addresses: dict[str, int] = field(default_factory=dict)  # every contract of the run

    @property
    def dry_run(self) -> bool:
        return self.sender.dry_run

    @property
    def record(self) -> Deployment:
        return self.file.record

    def save(self) -> None:
        self.file.save()

    def step(self, name: str, action: str) -> None:
        self.report.append((name, action))
        if self.on_step is not None:
            self.on_step(name, action)

    def salt_for(self, name: str) -> int:
        if self.salt is None:
            return secrets.randbits(200)
        from starknet_py.hash.utils import compute_hash_on_elements

        return int(compute_hash_on_elements([_SALT_DOMAIN, encode_short_string(name), self.salt]))


async def ensure_declared(ctx: DeployContext, artifact: ContractArtifact) -> int:
    """The class hash of ``artifact``, declared first when the chain does not know it."""
    class_hash = sierra_class_hash(artifact)
    label = f"class {artifact.name} {class_hash:#x}"
    if await class_declared(ctx.client, class_hash):
        ctx.step(label, "exists")
        return class_hash
    casm_hash = compiled_class_hash(artifact, ctx.starknet_version)
    await ctx.sender.declare(artifact, casm_hash, class_hash)
    if ctx.dry_run:
        ctx.would_declare.add(class_hash)
        ctx.step(label, "would declare")
    else:
        ctx.step(label, "declared")
    return class_hash


async def ensure_contract(
    ctx: DeployContext, name: str, class_hash: int, calldata: list[int], summary: str
) -> int:
    """The address of ``name``: the recorded one, else the deterministic one, deployed
    there first when nothing holds the class yet."""
    from starknet_py.net.udc_deployer.deployer import Deployer

    recorded = await _recorded_address(ctx, name, class_hash)
    if recorded is not None:
        ctx.addresses[name] = recorded
        ctx.step(f"contract {name} {recorded:#x}", "exists")
        return recorded
    call, address = Deployer().create_contract_deployment_raw(
        class_hash, salt=ctx.salt_for(name), raw_calldata=calldata
    )
    address = ctx.addresses[name] = int(address)
    found = await class_hash_at(ctx.client, address)
    if found == class_hash:
        _record_contract(ctx, name, address, class_hash, 0)
        ctx.step(f"contract {name} {address:#x}", "exists (at its deterministic address)")
        return address
    if found is not None:
        raise ChainError(
            f"{name}'s address {address:#x} holds class {found:#x}, not {class_hash:#x}: "
            "change [deploy] salt to deploy a new set"
        )
    depends = f"declaring {name}" if class_hash in ctx.would_declare else None
    planned = await ctx.sender.invoke(
        [call],
        kind="deploy",
        target=f"{name} at {address:#x} (Universal Deployer)",
        summary=summary,
        depends_on=depends,
    )
    if ctx.dry_run:
        ctx.would_deploy[address] = name
        ctx.step(f"contract {name} {address:#x}", "would deploy")
        return address
    _record_contract(ctx, name, address, class_hash, planned.block_number or 0)
    ctx.step(f"contract {name} {address:#x}", "deployed")
    return address


async def _recorded_address(ctx: DeployContext, name: str, class_hash: int) -> int | None:
    """The recorded address when it holds ``class_hash``; None when there is nothing to
    reuse (no entry; on a devnet also an empty or changed address). On a real network a
    recorded address that does not hold the class is an error: never a silent new set."""
    entry = ctx.record.contracts.get(name)
    if entry is None:
        return None
    address = entry["address"]
    found = await class_hash_at(ctx.client, address)
    if found == class_hash:
        return address
    if ctx.redeploy_changed:
        return None
    if found is None:
        raise UsageError(
            f"the record says {name} is at {address:#x} but no contract is there on this "
            "chain: is --out the record of another network (or the node behind)? Move it "
            "away to deploy afresh"
        )
    raise UsageError(
        f"{name} at {address:#x} (recorded) has class {found:#x}, but the compiled contract "
        f"is class {class_hash:#x}: the contracts changed since that deployment. A new set "
        "is never deployed silently: deploy it on purpose with another --out and [deploy] salt"
    )


def _record_contract(
    ctx: DeployContext, name: str, address: int, class_hash: int, block_number: int
) -> None:
    ctx.record.contracts[name] = {"address": address, "class_hash": class_hash}
    ctx.record.block_number = max(ctx.record.block_number, block_number)
    ctx.save()


def wanted_governance(
    params: DeployParams,
    *,
    registry: int,
    risk_engine: int,
    program_hash: int,
    child_program_hash: int,
) -> GovernanceParams:
    """The router's whole configuration as ``params`` and the deployment want it."""
    values = {
        **params.router,
        "fact_registry": registry,
        "program_hash": program_hash,
        "child_program_hash": child_program_hash,
        "risk_engine": risk_engine,
    }
    for key in PIN_KEYS:
        pin = params.pins.get(key, ())
        felts = [encode_short_string(t) for t in pin] if pin else [0, 0, 0, 0]
        for field_name, felt in zip(PIN_FIELDS[PIN_PATHS[key]], felts, strict=True):
            values[field_name] = felt
    return GovernanceParams(**values)


def router_constructor_calldata(
    owner: int, keepers: Sequence[int], governance: GovernanceParams
) -> list[int]:
    """``constructor(owner, keepers: Span<ContractAddress>, params: GovernanceParams)``."""
    return [owner, len(keepers), *keepers, *governance.as_dict().values()]


async def converge(
    ctx: DeployContext,
    params: DeployParams,
    artifacts: Mapping[str, ContractArtifact],
    *,
    roles: Roles,
    registry: int,
    program_hash: int,
    child_program_hash: int,
    oracle_sender: Sender | None,
) -> tuple[int, int]:
    """Declare, deploy and configure RiskEngine and StrategyRouterV2 (on ``registry``);
    returns their addresses."""
    hashes = {name: await ensure_declared(ctx, artifacts[name]) for name in NETWORK_CONTRACTS}
    delay = params.router["governance_delay_s"]  # RiskEngine's timelock: the router's delay
    risk_engine = await ensure_contract(
        ctx,
        "RiskEngine",
        hashes["RiskEngine"],
        [roles.owner, roles.oracle, delay],
        f"constructor(owner {roles.owner:#x}, oracle {roles.oracle:#x}, "
        f"governance_delay_s {delay})",
    )
    wanted = wanted_governance(
        params,
        registry=registry,
        risk_engine=risk_engine,
        program_hash=program_hash,
        child_program_hash=child_program_hash,
    )
    router = await ensure_contract(
        ctx,
        "StrategyRouterV2",
        hashes["StrategyRouterV2"],
        router_constructor_calldata(roles.owner, roles.keepers, wanted),
        f"constructor(owner {roles.owner:#x}, keepers [{_addresses(roles.keepers)}], "
        f"governance: {_governance_summary(wanted)})",
    )
    calls = await _risk_engine_calls(ctx, params, risk_engine, roles)
    calls += await _router_changes(ctx, router, wanted, roles.keepers)
    if calls:
        await ctx.sender.invoke(
            calls,
            kind="invoke",
            target=_targets(calls, {risk_engine: "RiskEngine", router: "StrategyRouterV2"}),
            summary=f"{len(calls)} owner calls",
        )
    await _initial_metrics(ctx, params, risk_engine, roles.oracle, oracle_sender)
    ctx.record.program_hash = program_hash
    ctx.record.child_program_hash = child_program_hash
    ctx.record.fact_registry = registry
    ctx.record.roles.update(
        owner=hex(roles.owner), oracle=hex(roles.oracle), keepers=[hex(k) for k in roles.keepers]
    )
    ctx.save()
    return risk_engine, router


def _addresses(values: Sequence[int]) -> str:
    return ", ".join(f"{v:#x}" for v in values)


def _governance_summary(gov: GovernanceParams) -> str:
    pins = {
        path: gov.pin(path) if any(gov.pin_felts(path)) else "unset"
        for path in ("direct", "bootloaded")
    }
    return (
        f"fact_registry {gov.fact_registry:#x}, program_hash {gov.program_hash:#x}, "
        f"child_program_hash {gov.child_program_hash:#x}, direct pin {pins['direct']}, "
        f"bootloaded pin {pins['bootloaded']}, min_security_bits {gov.min_security_bits}, "
        f"governance_delay_s {gov.governance_delay_s}, max_single_bps {gov.max_single_bps}, "
        f"min_diversification {gov.min_diversification}, rebalance_interval_s "
        f"{gov.rebalance_interval_s}, drift_threshold_bps {gov.drift_threshold_bps}"
    )


def _targets(calls: Sequence[Any], names: Mapping[int, str]) -> str:
    from starknet_py.hash.selector import get_selector_from_name

    functions = ("propose_change", "apply_change")
    by_selector = {int(get_selector_from_name(f)): f for f in (*functions, "cancel_change")}
    parts = [
        f"{names.get(int(c.to_addr), hex(int(c.to_addr)))}.{by_selector.get(c.selector, '?')}"
        for c in calls
    ]
    return ", ".join(dict.fromkeys(parts))


async def _owner_is_deployer(ctx: DeployContext, contract: int, name: str) -> bool:
    (owner,) = await call_view(ctx.client, contract, "get_owner")
    if owner != ctx.sender.address:
        ctx.step(
            f"{name}: owner is {owner:#x}, not the deploying account",
            "differences below are reported, not sent (the owner proposes them)",
        )
        return False
    return True


async def _risk_engine_calls(
    ctx: DeployContext, params: DeployParams, risk_engine: int, roles: Roles
) -> list[Any]:
    """Timelock calls (RiskEngine's own, the router's pattern) that bring its oracle, model
    parameters and delay to ``params``; the delay last, like the router's."""
    if risk_engine in ctx.would_deploy:
        return []  # deployed by this run with the wanted oracle, delay and default model
    (delay,) = await call_view(ctx.client, risk_engine, "get_governance_delay_s")
    wanted: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = [
        ("oracle", (roles.oracle,), tuple(await call_view(ctx.client, risk_engine, "get_oracle")))
    ]
    if params.model_params is not None:
        current = tuple(await call_view(ctx.client, risk_engine, "get_model_params"))
        wanted.append(("model_params", params.model_params, current))
    wanted.append(("governance_delay_s", (params.router["governance_delay_s"],), (delay,)))
    changes = []
    for param, values, current in wanted:
        if values == current:
            ctx.step(_risk_engine_label(param, values), "unchanged")
        else:
            changes.append((param, values))
    if not changes:
        return []
    sending = await _owner_is_deployer(ctx, risk_engine, "RiskEngine")
    now = int((await ctx.client.get_block(block_number="latest")).timestamp)
    calls: list[Any] = []
    for param, values in changes:
        pending = await _pending_change(ctx.client, risk_engine, param, 0)
        action, change_calls = _timelock_calls(
            risk_engine, param, 0, values, pending, now=now, delay=delay
        )
        if not sending:
            action = "differs"
        elif ctx.dry_run and change_calls:
            action = f"would be {action}"
        calls += change_calls
        ctx.step(_risk_engine_label(param, values), action)
    return calls if sending else []


def _risk_engine_label(param: str, values: tuple[int, ...]) -> str:
    return f"RiskEngine.{param} = {values[0]:#x}" if param == "oracle" else f"RiskEngine.{param}"


async def _router_changes(
    ctx: DeployContext, router: int, wanted: GovernanceParams, keepers: Sequence[int]
) -> list[Any]:
    """Timelock calls that bring the router to ``wanted`` and enable ``keepers``: a
    change is proposed (after cancelling a different pending one), and applied in the
    same multicall when the delay in force is 0, or later once its eta has passed."""
    if router in ctx.would_deploy:
        return []  # its constructor takes the whole configuration
    current = GovernanceParams.from_values(
        await call_view(ctx.client, router, "get_governance_params")
    )
    changes: list[tuple[str, int, tuple[int, ...]]] = []
    for param in PROPOSAL_FIELDS:
        values = wanted.proposal_values(param)
        if current.proposal_values(param) == values:
            ctx.step(_change_label(param, 0, values), "unchanged")
        else:
            changes.append((param, 0, values))
    for keeper in keepers:
        (is_keeper,) = await call_view(ctx.client, router, "is_keeper", [keeper])
        if is_keeper:
            ctx.step(_change_label(KEEPER_PROPOSAL, keeper, (1,)), "unchanged")
        else:
            changes.append((KEEPER_PROPOSAL, keeper, (1,)))
    if not changes:
        return []
    sending = await _owner_is_deployer(ctx, router, "StrategyRouterV2")
    # The delay last: every other change is proposed under the delay in force.
    changes.sort(key=lambda c: c[0] == "governance_delay_s")
    now = int((await ctx.client.get_block(block_number="latest")).timestamp)
    calls: list[Any] = []
    for param, subject, values in changes:
        pending = await _pending_change(ctx.client, router, param, subject)
        action, change_calls = _timelock_calls(
            router, param, subject, values, pending, now=now, delay=current.governance_delay_s
        )
        if not sending:
            action = "differs"
        elif ctx.dry_run and change_calls:
            action = f"would be {action}"
        calls += change_calls
        ctx.step(_change_label(param, subject, values), action)
    return calls if sending else []


async def _pending_change(
    client: Any, contract: int, param: str, subject: int
) -> PendingChange | None:
    """The pending change of (param, subject) on the router or RiskEngine (same view)."""
    from keeper.chain import views as view_decoding  # parses the ABIs: only when deploying

    raw = await call_view(
        client, contract, "get_pending_change", [encode_short_string(param), subject]
    )
    return view_decoding.pending_change(param, subject, raw)


def _change_label(param: str, subject: int, values: tuple[int, ...]) -> str:
    if param == KEEPER_PROPOSAL:
        return f"StrategyRouterV2.keeper {subject:#x}"
    return f"StrategyRouterV2.{param} = {_shown_values(param, values)}"


def _timelock_calls(
    contract: int,
    param: str,
    subject: int,
    values: tuple[int, ...],
    pending: PendingChange | None,
    *,
    now: int,
    delay: int,
) -> tuple[str, list[Any]]:
    """(action, calls) that move (param, subject) of ``contract`` (the router or RiskEngine)
    towards ``values`` through its timelock."""
    key = [encode_short_string(param), subject]
    apply = make_call(contract, "apply_change", key)
    if pending is not None and pending.values == values and not pending.expired_at(now):
        if pending.eta <= now:
            return "set", [apply]
        return f"pending (eta {pending.eta}, in {pending.eta - now} s)", []
    calls = [] if pending is None else [make_call(contract, "cancel_change", key)]
    calls.append(make_call(contract, "propose_change", [*key, len(values), *values]))
    if delay == 0:
        return "set", [*calls, apply]
    return f"proposed (eta in {delay} s: run again then)", calls


def _shown_values(param: str, values: tuple[int, ...]) -> str:
    if param in ("direct_verifier", "bootloaded_verifier"):
        if not any(values):
            return "unset"
        return "(" + ", ".join(decode_short_string(v) or hex(v) for v in values) + ")"
    (value,) = values
    return f"{value:#x}" if value > 2**64 else str(value)


async def _initial_metrics(
    ctx: DeployContext,
    params: DeployParams,
    risk_engine: int,
    oracle: int,
    oracle_sender: Sender | None,
) -> None:
    """The oracle's first snapshot, when RiskEngine has none and ``params`` gives one."""
    label = f"RiskEngine.metrics ({len(params.metrics)} protocols)"
    if not params.metrics:
        ctx.step("RiskEngine.metrics", "none given: the oracle publishes them")
        return
    fresh = risk_engine in ctx.would_deploy
    if not fresh:
        (count,) = await call_view(ctx.client, risk_engine, "get_protocol_count")
        if count:
            # Initial values only: the oracle owns the metrics once they exist.
            ctx.step(f"RiskEngine.metrics ({count} protocols on chain, left as they are)", "exists")
            return
    if oracle_sender is None:
        ctx.step(label, f"left to the oracle {oracle:#x} (not the deploying account)")
        return
    data = [len(params.metrics)] + [v for row in params.metrics for v in row]
    await oracle_sender.invoke(
        [make_call(risk_engine, "set_all_metrics", data)],
        kind="invoke",
        target=f"RiskEngine.set_all_metrics ({risk_engine:#x})",
        summary=f"{len(params.metrics)} protocols, by the oracle {oracle:#x}",
        depends_on="deploying RiskEngine" if fresh else None,
    )
    ctx.step(label, "would set" if ctx.dry_run else "set")


async def settle_pending(ctx: DeployContext) -> None:
    """Settle the transaction an interrupted run left in flight (before reading state)."""
    pending = ctx.record.pending_tx
    if not pending:
        return
    tx_hash, what = int(pending["tx_hash"], 16), str(pending.get("what", "transaction"))
    label = f"earlier run's {what} (tx {tx_hash:#x})"
    known = await _tx_known(ctx.client, tx_hash)
    if not known:
        nonce = int(
            await ctx.client.get_contract_nonce(
                int(pending["sender"], 16), block_number="pre_confirmed"
            )
        )
        if nonce <= int(pending["nonce"]):
            ctx.step(label, "never sent")
        else:
            ctx.step(label, "unknown to the node, its nonce used: state re-read from the chain")
    elif ctx.dry_run:
        ctx.step(label, "in flight (a real run waits for it first)")
        return
    else:
        receipt = await wait_for_receipt(
            ctx.client, tx_hash, ctx.sender.receipt_timeout_s, f"earlier run's {what}"
        )
        reason = receipt.revert_reason
        ctx.step(label, f"reverted: {decode_revert_reason(reason)}" if reason else "accepted")
    ctx.file.journal(None)


async def _tx_known(client: Any, tx_hash: int) -> bool:
    from starknet_py.net.client_errors import ClientError

    try:
        await client.get_transaction_status(tx_hash)
    except ClientError as exc:
        if rpc_code(exc) == TXN_HASH_NOT_FOUND:
            return False
        raise
    return True


# ---------------------------------------------------------------------------- program hashes


def default_program_hashes() -> tuple[int, int]:
    """(direct program hash, bootloaded child hash) of the compiled allocation program.

    Raises UsageError when prover/ cannot provide them (pass them explicitly then).
    """
    try:
        from prover import facts, program

        compiled = program.compiled_program()
        direct = int(facts.program_hash(compiled))
        child = int(facts.pedersen_program_hash_chain(compiled))
    except (ImportError, AttributeError) as exc:
        raise UsageError(
            "cannot compute the allocation program's hashes from prover/ "
            f"({exc}); pass --program-hash and --child-program-hash"
        ) from exc
    return direct, child
