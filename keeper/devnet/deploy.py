"""Declare, deploy and configure RiskEngine, DevFactRegistry and StrategyRouterV2 on a
starknet-devnet, idempotently.

Running it twice is safe: a class is declared only when the chain does not know its
hash, a contract is deployed only when the deployment file's address on that chain does
not hold the expected class, and every role / parameter is written only when the chain
value differs from the wanted one. Each step is reported as ``(name, action)`` where
action is "exists", "declared", "deployed", "set", "unchanged", "proposed" or "pending".

The router takes its whole configuration in its constructor (owner, keepers, the 18
GovernanceParams: schedule, constraints, security bits, registry, program hashes,
verifier pins, timelock delay). Afterwards a value changes only through the router's
timelock: the deploy proposes the change and, when ``governance_delay_s`` is 0 (a devnet),
applies it in the same multicall ("set"); with a delay it reports "proposed" (or "pending"
until the eta) and a later run applies it.

The deployer is devnet's first predeployed account (``devnet_getPredeployedAccounts``);
role fields in the TOML name a predeployed account by index or give an address.
Contracts are read from ``contracts/target`` (``scripts/build_contracts.sh``).
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import httpx

from keeper.chain.codec import decode_short_string, encode_short_string
from keeper.chain.governance import (
    KEEPER_PROPOSAL,
    PIN_FIELDS,
    PROPOSAL_FIELDS,
    GovernanceParams,
    PendingChange,
    VerificationPath,
)
from keeper.core.errors import ChainError, ConfigError, UsageError
from keeper.core.logs import display_url

CONTRACT_NAMES = ("RiskEngine", "DevFactRegistry", "StrategyRouterV2")
PACKAGE = "obsqra"
PROTOCOL_FIELDS = (
    "utilization_bps",
    "volatility_bps",
    "liquidity_tier",
    "audit_score",
    "age_days",
    "apy_bps",
)
MODEL_PARAM_NAMES = (
    "w_util",
    "w_vol",
    "liq_penalty_0",
    "liq_penalty_1",
    "liq_penalty_2",
    "liq_penalty_3",
    "audit_num",
    "audit_den",
    "age_cap_days",
    "age_penalty",
    "risk_floor",
    "risk_ceiling",
)
# [router] scalars: TOML key -> the router's accepted range (contracts/README.md).
ROUTER_LIMITS: dict[str, tuple[int, int]] = {
    "rebalance_interval_s": (1, 31_536_000),
    "drift_threshold_bps": (0, 10_000),
    "max_single_bps": (1, 10_000),
    "min_diversification": (0, 16),
    "min_security_bits": (80, 256),
    "governance_delay_s": (0, 2_592_000),
}
# [router] verifier pins: TOML key (= proposal param) -> four strings, or [] (unset).
PIN_KEYS = ("direct_verifier", "bootloaded_verifier")
_PIN_PATHS: dict[str, VerificationPath] = {
    "direct_verifier": "direct",
    "bootloaded_verifier": "bootloaded",
}
_TX_POLL_S = 0.1

Report = list[tuple[str, str]]


# ---------------------------------------------------------------------------- params


@dataclass(frozen=True)
class DeployParams:
    """The wanted devnet state, read from a TOML file (config/deploy.devnet.toml)."""

    metrics: tuple[tuple[int, ...], ...]
    model_params: tuple[int, ...] | None
    router: Mapping[str, int]  # every key of ROUTER_LIMITS
    pins: Mapping[str, tuple[str, ...]]  # PIN_KEYS -> 4 short strings, or () = unset
    oracle: int | str
    keepers: tuple[int | str, ...]
    registrar: int | str


def load_deploy_params(path: Path) -> DeployParams:
    """Parse and validate the deploy TOML; every problem is reported at once."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"deploy parameters file {path} does not exist") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read deploy parameters {path}: {exc}") from exc
    return parse_deploy_params(raw, source=str(path))


def parse_deploy_params(raw: Mapping[str, Any], *, source: str = "") -> DeployParams:
    problems: list[str] = []
    metrics = _parse_metrics(raw.get("protocols"), problems)
    model_params = _parse_model_params(raw.get("model_params"), problems)
    router, pins = _parse_router(raw.get("router", {}), problems)
    roles = raw.get("roles", {})
    if not isinstance(roles, dict):
        problems.append("[roles] must be a table")
        roles = {}
    oracle = _parse_account_ref(roles.get("oracle", 0), "roles.oracle", problems)
    registrar = _parse_account_ref(roles.get("registrar", 0), "roles.registrar", problems)
    keepers_raw = roles.get("keepers", [0])
    keepers: tuple[int | str, ...] = ()
    if not isinstance(keepers_raw, list) or not keepers_raw:
        problems.append("roles.keepers must be a non-empty list of account indices/addresses")
    else:
        keepers = tuple(
            _parse_account_ref(k, f"roles.keepers[{i}]", problems)
            for i, k in enumerate(keepers_raw)
        )
    if problems:
        raise ConfigError(problems, source=source)
    return DeployParams(
        metrics=metrics,
        model_params=model_params,
        router=router,
        pins=pins,
        oracle=oracle,
        keepers=keepers,
        registrar=registrar,
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_metrics(raw: object, problems: list[str]) -> tuple[tuple[int, ...], ...]:
    limits = (10000, 10000, 3, 100, 100000, 100000)
    if not isinstance(raw, list) or not 1 <= len(raw) <= 16:
        problems.append("[[protocols]] must list 1..16 protocols")
        return ()
    rows: list[tuple[int, ...]] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            problems.append(f"protocols[{i}] must be a table")
            continue
        row: list[int] = []
        for name, limit in zip(PROTOCOL_FIELDS, limits, strict=True):
            value = entry.get(name)
            if not _is_int(value) or not 0 <= value <= limit:
                problems.append(f"protocols[{i}].{name} must be an integer in 0..{limit}")
                value = 0
            row.append(value)
        unknown = set(entry) - set(PROTOCOL_FIELDS) - {"name"}
        if unknown:
            problems.append(f"protocols[{i}] has unknown keys {sorted(unknown)}")
        rows.append(tuple(row))
    return tuple(rows)


def _parse_model_params(raw: object, problems: list[str]) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("[model_params] must be a table")
        return None
    missing = [n for n in MODEL_PARAM_NAMES if n not in raw]
    unknown = sorted(set(raw) - set(MODEL_PARAM_NAMES))
    if missing:
        problems.append(f"[model_params] misses {missing} (give all 12 or none)")
    if unknown:
        problems.append(f"[model_params] has unknown keys {unknown}")
    values: list[int] = []
    for name in MODEL_PARAM_NAMES:
        value = raw.get(name, 0)
        if not _is_int(value) or not 0 <= value <= 100000:
            problems.append(f"model_params.{name} must be an integer in 0..100000")
            value = 0
        values.append(value)
    params = dict(zip(MODEL_PARAM_NAMES, values, strict=True))
    if params["audit_den"] < 1 or params["age_cap_days"] < 1:
        problems.append("model_params.audit_den and age_cap_days must be >= 1")
    if params["risk_ceiling"] < params["risk_floor"]:
        problems.append("model_params.risk_ceiling must be >= risk_floor")
    return tuple(values)


def _parse_router(
    raw: object, problems: list[str]
) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
    """[router]: every governance value the router's constructor takes (no defaults)."""
    if not isinstance(raw, dict):
        problems.append("[router] must be a table")
        return {}, {}
    out: dict[str, int] = {}
    pins: dict[str, tuple[str, ...]] = {}
    for key in sorted(set(raw) - set(ROUTER_LIMITS) - set(PIN_KEYS)):
        problems.append(
            f"router.{key} is not a known parameter ({sorted([*ROUTER_LIMITS, *PIN_KEYS])})"
        )
    for key, (low, high) in ROUTER_LIMITS.items():
        value = raw.get(key)
        if value is None:
            problems.append(f"router.{key} is missing (the router's constructor needs it)")
        elif not _is_int(value) or not low <= value <= high:
            problems.append(f"router.{key} must be an integer in {low}..{high}")
        else:
            out[key] = value
    for key in PIN_KEYS:
        pin = _parse_pin(raw.get(key), f"router.{key}", problems)
        if pin is not None:
            pins[key] = pin
    return out, pins


def _parse_pin(value: object, where: str, problems: list[str]) -> tuple[str, ...] | None:
    """A verifier pin: [layout, hasher, stone_version, 'strict'], or [] (accept nothing)."""
    if value is None:
        problems.append(f"{where} is missing: four strings, or [] to accept nothing")
        return None
    if value == []:
        return ()
    if not isinstance(value, list) or len(value) != 4 or not all(isinstance(v, str) for v in value):
        problems.append(f"{where} must be [layout, hasher, stone_version, 'strict'] or []")
        return None
    texts = tuple(str(v) for v in value)
    bad = [t for t in texts if not (1 <= len(t) <= 31 and t.isascii() and t.isprintable())]
    if bad:
        problems.append(f"{where}: {bad} are not short strings (1..31 printable ASCII)")
        return None
    if texts[3] != "strict":
        problems.append(f"{where}: memory verification must be 'strict', not {texts[3]!r}")
        return None
    return texts


def _parse_account_ref(value: object, where: str, problems: list[str]) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1000:
        return value
    if isinstance(value, str) and value.startswith("0x"):
        try:
            int(value, 16)
        except ValueError:
            pass
        else:
            return value
    problems.append(f"{where} must be a predeployed account index or a 0x address")
    return 0


# ---------------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class ContractArtifact:
    name: str
    sierra: str
    casm: str
    abi: list[Any]


def load_artifacts(target_dir: Path) -> dict[str, ContractArtifact]:
    """Read the Sierra/CASM pairs that scripts/build_contracts.sh (or scarb) wrote."""
    artifacts: dict[str, ContractArtifact] = {}
    for name in CONTRACT_NAMES:
        sierra_path = target_dir / f"{PACKAGE}_{name}.contract_class.json"
        casm_path = target_dir / f"{PACKAGE}_{name}.compiled_contract_class.json"
        for path in (sierra_path, casm_path):
            if not path.is_file():
                raise UsageError(
                    f"{path} is missing: build the contracts first (make contracts, "
                    "or scripts/build_contracts.sh)"
                )
        sierra = sierra_path.read_text()
        abi = json.loads(sierra)["abi"]
        if isinstance(abi, str):
            abi = json.loads(abi)
        artifacts[name] = ContractArtifact(name, sierra, casm_path.read_text(), abi)
    return artifacts


def sierra_class_hash(artifact: ContractArtifact) -> int:
    from starknet_py.common import create_sierra_compiled_contract
    from starknet_py.hash.sierra_class_hash import compute_sierra_class_hash

    return int(compute_sierra_class_hash(create_sierra_compiled_contract(artifact.sierra)))


def compiled_class_hash(artifact: ContractArtifact, starknet_version: str) -> int:
    """The CASM hash with the hash function the node's Starknet version uses."""
    from semver import Version
    from starknet_py.common import create_casm_class
    from starknet_py.hash.casm_class_hash import (
        compute_casm_class_hash,
        get_casm_hash_method_for_starknet_version,
    )

    method = get_casm_hash_method_for_starknet_version(_parse_version(Version, starknet_version))
    return int(compute_casm_class_hash(create_casm_class(artifact.casm), hash_method=method))


def _parse_version(version_cls: Any, text: str) -> Any:
    parts = [*text.split("."), "0", "0"][:3]  # Starknet versions may have 4 parts
    return version_cls.parse(".".join(parts))


# ---------------------------------------------------------------------------- chain


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


def selector(name: str) -> int:
    from starknet_py.hash.selector import get_selector_from_name

    return int(get_selector_from_name(name))


def make_call(to: int, function: str, calldata: Sequence[int] = ()) -> Any:
    from starknet_py.net.client_models import Call

    return Call(to_addr=to, selector=selector(function), calldata=list(calldata))


async def call_view(client: Any, to: int, function: str, calldata: Sequence[int] = ()) -> list[int]:
    return [int(x) for x in await client.call_contract(make_call(to, function, calldata))]


async def invoke(account: Any, calls: list[Any]) -> int:
    """Send one multicall (v3, resource bounds from estimate) and wait for acceptance."""
    from starknet_py.net.client_errors import ClientError

    try:
        sent = await account.execute_v3(calls=calls, auto_estimate=True)
        receipt = await account.client.wait_for_tx(sent.transaction_hash, check_interval=_TX_POLL_S)
    except ClientError as exc:
        raise ChainError(f"transaction failed: {exc.message}") from exc
    if getattr(receipt, "revert_reason", None):
        raise ChainError(f"transaction reverted: {receipt.revert_reason}")
    return int(sent.transaction_hash)


async def class_declared(client: Any, class_hash: int) -> bool:
    from starknet_py.net.client_errors import ClientError

    try:
        await client.get_class_by_hash(class_hash)
    except ClientError:
        return False
    return True


async def class_hash_at(client: Any, address: int) -> int | None:
    from starknet_py.net.client_errors import ClientError

    try:
        return int(await client.get_class_hash_at(address))
    except ClientError:
        return None


# ---------------------------------------------------------------------------- deploy


@dataclass
class Deployment:
    """What ``deployments/devnet.json`` holds."""

    chain_id: int
    rpc_url: str
    deployer: int
    block_number: int = 0
    contracts: dict[str, dict[str, int]] = field(default_factory=dict)
    program_hash: int = 0
    child_program_hash: int = 0
    roles: dict[str, Any] = field(default_factory=dict)

    def address(self, name: str) -> int:
        return self.contracts[name]["address"]

    def to_json(self) -> dict[str, Any]:
        return {
            "network": "devnet",
            "chain_id": hex(self.chain_id),
            "rpc_url": self.rpc_url,
            "deployer": hex(self.deployer),
            "block_number": self.block_number,
            "contracts": {
                name: {key: hex(value) for key, value in entry.items()}
                for name, entry in self.contracts.items()
            },
            "program_hash": hex(self.program_hash),
            "child_program_hash": hex(self.child_program_hash),
            "roles": self.roles,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deployment:
        return cls(
            chain_id=int(data["chain_id"], 16),
            rpc_url=str(data.get("rpc_url", "")),
            deployer=int(data["deployer"], 16),
            block_number=int(data.get("block_number", 0)),
            contracts={
                name: {key: int(value, 16) for key, value in entry.items()}
                for name, entry in data.get("contracts", {}).items()
            },
            program_hash=int(data.get("program_hash", "0x0"), 16),
            child_program_hash=int(data.get("child_program_hash", "0x0"), 16),
            roles=dict(data.get("roles", {})),
        )


def read_deployment(path: Path) -> Deployment | None:
    if not path.exists():
        return None
    try:
        return Deployment.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(
            f"{path} is not a deployment file ({exc}); move it away to deploy afresh"
        ) from exc


def write_deployment(path: Path, deployment: Deployment) -> None:
    """Atomic write: an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(deployment.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def _resolve(ref: int | str, accounts: Sequence[DevnetAccount], where: str) -> int:
    if isinstance(ref, str):
        return int(ref, 16)
    if ref >= len(accounts):
        raise UsageError(
            f"{where} names predeployed account {ref} but the devnet has {len(accounts)}"
        )
    return accounts[ref].address


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
) -> tuple[Deployment, Report]:
    """Bring the devnet to the state ``params`` describes; return it and what was done.

    ``out_path`` (if given) is read first and rewritten after every deployment, so an
    interrupted run resumes. ``salt`` fixes the UDC salt (default: random).
    """
    from starknet_py.net.full_node_client import FullNodeClient

    report: Report = []

    def step(name: str, action: str) -> None:
        report.append((name, action))
        if on_step is not None:
            on_step(name, action)

    accounts = predeployed_accounts(rpc_url)
    if not accounts:
        raise ChainError(
            f"{display_url(rpc_url)} has no predeployed accounts (start devnet with --accounts)"
        )
    client = FullNodeClient(node_url=rpc_url)
    chain_id = int(await client.get_chain_id(), 16)
    account = make_account(rpc_url, accounts[0], chain_id)
    block = await client.get_block(block_number="latest")
    starknet_version = str(block.starknet_version)

    previous = read_deployment(out_path) if out_path is not None else None
    deployment = Deployment(chain_id=chain_id, rpc_url=rpc_url, deployer=accounts[0].address)
    if previous is not None and previous.chain_id == chain_id:
        deployment.contracts = dict(previous.contracts)
        deployment.block_number = previous.block_number

    class_hashes: dict[str, int] = {}
    for name in CONTRACT_NAMES:
        artifact = artifacts[name]
        class_hash = sierra_class_hash(artifact)
        class_hashes[name] = class_hash
        if await class_declared(client, class_hash):
            step(f"class {name} {hex(class_hash)}", "exists")
            continue
        await _declare(account, artifact, compiled_class_hash(artifact, starknet_version))
        step(f"class {name} {hex(class_hash)}", "declared")

    owner = accounts[0].address
    registrar = _resolve(params.registrar, accounts, "roles.registrar")
    oracle = _resolve(params.oracle, accounts, "roles.oracle")
    keepers = [_resolve(k, accounts, "roles.keepers") for k in params.keepers]

    async def ensure(name: str, calldata: Callable[[], list[int]]) -> int:
        entry = deployment.contracts.get(name)
        if entry is not None and await class_hash_at(client, entry["address"]) == class_hashes[
            name
        ]:
            step(f"contract {name} {hex(entry['address'])}", "exists")
            return entry["address"]
        address, block_number = await _deploy(account, class_hashes[name], calldata(), salt)
        deployment.contracts[name] = {"address": address, "class_hash": class_hashes[name]}
        deployment.block_number = max(deployment.block_number, block_number)
        if out_path is not None:
            write_deployment(out_path, deployment)
        step(f"contract {name} {hex(address)}", "deployed")
        return address

    registry = await ensure("DevFactRegistry", lambda: [registrar])
    risk_engine = await ensure("RiskEngine", lambda: [owner, oracle])
    wanted = wanted_governance(
        params,
        registry=registry,
        risk_engine=risk_engine,
        program_hash=program_hash,
        child_program_hash=child_program_hash,
    )
    router = await ensure(
        "StrategyRouterV2", lambda: router_constructor_calldata(owner, keepers, wanted)
    )

    calls, oracle_calls = await _configuration_calls(
        client,
        params,
        registry=registry,
        risk_engine=risk_engine,
        router=router,
        registrar=registrar,
        oracle=oracle,
        keepers=keepers,
        wanted=wanted,
        step=step,
    )
    if calls:
        await invoke(account, calls)
    if oracle_calls:
        oracle_account = next((a for a in accounts if a.address == oracle), None)
        if oracle_account is None:
            raise UsageError(
                "initial metrics must be written by the oracle, which is not a predeployed "
                "account here: make roles.oracle a predeployed account index"
            )
        await invoke(make_account(rpc_url, oracle_account, chain_id), oracle_calls)

    deployment.program_hash = program_hash
    deployment.child_program_hash = child_program_hash
    deployment.roles = {
        "owner": hex(owner),
        "oracle": hex(oracle),
        "keepers": [hex(k) for k in keepers],
        "registrar": hex(registrar),
    }
    if out_path is not None:
        write_deployment(out_path, deployment)
    return deployment, report


async def _declare(account: Any, artifact: ContractArtifact, casm_hash: int) -> None:
    from starknet_py.net.client_errors import ClientError

    try:
        declare_tx = await account.sign_declare_v3(
            compiled_contract=artifact.sierra, compiled_class_hash=casm_hash, auto_estimate=True
        )
        sent = await account.client.declare(transaction=declare_tx)
        await account.client.wait_for_tx(sent.transaction_hash, check_interval=_TX_POLL_S)
    except ClientError as exc:
        hint = ""
        if "CompiledClassHashMismatch" in exc.message or "compiled class hash" in exc.message:
            hint = (
                " (the CASM was compiled by a different Sierra compiler than the devnet's: "
                "rebuild with scripts/build_contracts.sh and the pinned versions)"
            )
        raise ChainError(f"declaring {artifact.name} failed: {exc.message}{hint}") from exc


async def _deploy(
    account: Any, class_hash: int, calldata: list[int], salt: int | None
) -> tuple[int, int]:
    from starknet_py.net.udc_deployer.deployer import Deployer

    deployer = Deployer()
    deploy_call, address = deployer.create_contract_deployment_raw(
        class_hash,
        salt=salt if salt is not None else secrets.randbits(200),
        raw_calldata=calldata,
    )
    await invoke(account, [deploy_call])
    block_number = int(await account.client.get_block_number())
    return int(address), block_number


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
        for field_name, felt in zip(PIN_FIELDS[_PIN_PATHS[key]], felts, strict=True):
            values[field_name] = felt
    return GovernanceParams(**values)


def router_constructor_calldata(
    owner: int, keepers: Sequence[int], governance: GovernanceParams
) -> list[int]:
    """``constructor(owner, keepers: Span<ContractAddress>, params: GovernanceParams)``."""
    return [owner, len(keepers), *keepers, *governance.as_dict().values()]


async def _configuration_calls(
    client: Any,
    params: DeployParams,
    *,
    registry: int,
    risk_engine: int,
    router: int,
    registrar: int,
    oracle: int,
    keepers: list[int],
    wanted: GovernanceParams,
    step: Callable[[str, str], None],
) -> tuple[list[Any], list[Any]]:
    """Owner calls and oracle calls that bring roles and parameters to ``params``."""
    calls: list[Any] = []

    (current_registrar,) = await call_view(client, registry, "get_registrar")
    if current_registrar != registrar:
        raise ChainError(
            f"DevFactRegistry {registry:#x} has registrar {current_registrar:#x}, not the wanted "
            f"{registrar:#x}; only the registrar can change it: deploy afresh (move the "
            "deployment file away)"
        )
    step(f"DevFactRegistry.registrar = {registrar:#x}", "unchanged")
    (current_oracle,) = await call_view(client, risk_engine, "get_oracle")
    if current_oracle == oracle:
        step(f"RiskEngine.oracle = {oracle:#x}", "unchanged")
    else:
        calls.append(make_call(risk_engine, "set_oracle", [oracle]))
        step(f"RiskEngine.oracle = {oracle:#x}", "set")

    if params.model_params is not None:
        current = await call_view(client, risk_engine, "get_model_params")
        if tuple(current) != params.model_params:
            calls.append(make_call(risk_engine, "set_model_params", list(params.model_params)))
            step("RiskEngine.model_params", "set")
        else:
            step("RiskEngine.model_params", "unchanged")

    calls += await _router_changes(client, router, wanted, keepers, step)

    oracle_calls: list[Any] = []
    (count,) = await call_view(client, risk_engine, "get_protocol_count")
    if count == 0:
        data = [len(params.metrics)] + [v for row in params.metrics for v in row]
        oracle_calls.append(make_call(risk_engine, "set_all_metrics", data))
        step(f"RiskEngine.metrics ({len(params.metrics)} protocols)", "set")
    else:
        # Initial values only: the oracle owns the metrics once they exist.
        step(f"RiskEngine.metrics ({count} protocols on chain, left as they are)", "exists")
    return calls, oracle_calls


async def _router_changes(
    client: Any,
    router: int,
    wanted: GovernanceParams,
    keepers: Sequence[int],
    step: Callable[[str, str], None],
) -> list[Any]:
    """Timelock calls that bring the router to ``wanted`` and enable ``keepers``: a
    change is proposed (after cancelling a different pending one), and applied in the
    same multicall when the delay in force is 0, or later once its eta has passed."""
    from keeper.chain import views as view_decoding  # parses the ABIs: only when deploying

    current = GovernanceParams.from_values(
        await call_view(client, router, "get_governance_params")
    )
    now = int((await client.get_block(block_number="latest")).timestamp)
    changes: list[tuple[str, int, tuple[int, ...]]] = []
    for param in PROPOSAL_FIELDS:
        values = wanted.proposal_values(param)
        label = f"StrategyRouterV2.{param} = {_shown_values(param, values)}"
        if current.proposal_values(param) == values:
            step(label, "unchanged")
        else:
            changes.append((param, 0, values))
    for keeper in keepers:
        (is_keeper,) = await call_view(client, router, "is_keeper", [keeper])
        if is_keeper:
            step(f"StrategyRouterV2.keeper {keeper:#x}", "unchanged")
        else:
            changes.append((KEEPER_PROPOSAL, keeper, (1,)))
    # The delay last: every other change is proposed under the delay in force.
    changes.sort(key=lambda c: c[0] == "governance_delay_s")
    calls: list[Any] = []
    for param, subject, values in changes:
        raw = await call_view(
            client, router, "get_pending_change", [encode_short_string(param), subject]
        )
        pending = view_decoding.pending_change(param, subject, raw)
        action, change_calls = _timelock_calls(
            router, param, subject, values, pending, now=now, delay=current.governance_delay_s
        )
        calls += change_calls
        label = (
            f"StrategyRouterV2.keeper {subject:#x}"
            if param == KEEPER_PROPOSAL
            else f"StrategyRouterV2.{param} = {_shown_values(param, values)}"
        )
        step(label, action)
    return calls


def _timelock_calls(
    router: int,
    param: str,
    subject: int,
    values: tuple[int, ...],
    pending: PendingChange | None,
    *,
    now: int,
    delay: int,
) -> tuple[str, list[Any]]:
    """(action, calls) that move (param, subject) towards ``values`` through the timelock."""
    key = [encode_short_string(param), subject]
    apply = make_call(router, "apply_change", key)
    if pending is not None and pending.values == values and not pending.expired_at(now):
        if pending.eta <= now:
            return "set", [apply]
        return f"pending (eta {pending.eta}, in {pending.eta - now} s)", []
    calls = [] if pending is None else [make_call(router, "cancel_change", key)]
    calls.append(make_call(router, "propose_change", [*key, len(values), *values]))
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
