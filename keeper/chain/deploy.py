"""Declare, deploy and converge RiskEngine and StrategyRouterV2: the one core behind
``obsqra-keeper deploy`` (Sepolia, mainnet, any RPC URL) and ``obsqra-keeper devnet deploy``.

Running it again is always safe, and finishes what an interrupted run left:

- a class is declared only when the chain does not know its hash;
- a contract is deployed only when neither its recorded address nor its deterministic
  address (UDC, fixed salt: known before anything is sent) holds the expected class;
- every role and parameter is written only when the chain value differs. The router
  takes its whole configuration in its constructor; afterwards a value changes only
  through its timelock: proposed, then applied in the same multicall when the delay in
  force is 0 (a devnet), or by a later run once the eta has passed;
- the record (``--out``, JSON) is rewritten atomically after every step; a transaction's
  hash and nonce are written before it is broadcast, so a run killed while one was in
  flight first settles it (receipt, or "never sent" when its nonce is still unused).

A dry run reads the chain and estimates every transaction without sending any; a
transaction that depends on one not sent yet (a deployment of a class the run would
declare first) is listed with that reason instead of a fee. Each step is reported as
``(name, action)``; every transaction as a ``PlannedTx``.

The devnet specifics (predeployed accounts, the trusted DevFactRegistry or Integrity
from its classes) live in ``keeper.devnet.deploy``; the real-network specifics (keystore
signer, chain checks, Integrity's FactRegistry of the chain, the mainnet delay floor) in
``deploy_network`` below.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard

from keeper.chain.codec import FIELD_PRIME, chain_name, decode_short_string, encode_short_string
from keeper.chain.errors import (
    FeeAboveCeilingError,
    ReceiptTimeoutError,
    WouldRevertError,
)
from keeper.chain.fees import max_fee_of, resource_bounds_for
from keeper.chain.governance import (
    KEEPER_PROPOSAL,
    PIN_FIELDS,
    PROPOSAL_FIELDS,
    GovernanceParams,
    PendingChange,
    VerificationPath,
)
from keeper.chain.integrity import known_fact_registry, verifier_preset
from keeper.chain.reverts import TXN_HASH_NOT_FOUND, decode_revert_reason, error_text, rpc_code
from keeper.core.errors import ChainError, ConfigError, UsageError
from keeper.core.logs import display_url

PACKAGE = "obsqra"
# What a real network gets; a devnet adds the DevFactRegistry (keeper.devnet.deploy).
NETWORK_CONTRACTS = ("RiskEngine", "StrategyRouterV2")
PROTOCOL_FIELDS = (
    "utilization_bps",
    "volatility_bps",
    "liquidity_tier",
    "audit_score",
    "age_days",
    "apy_bps",
)
_PROTOCOL_LIMITS = (10000, 10000, 3, 100, 100000, 100000)
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
REGISTRY_KEY = "fact_registry"
_TOP_LEVEL_KEYS = ("roles", "router", "model_params", "protocols", "fees", "deploy")
# Integrity's configuration for our own Stone proofs (prover/: small layout, keccak).
DEFAULT_DIRECT_PIN = ("small", "keccak_160_lsb", "stone6", "strict")
PRODUCTION_GOVERNANCE_DELAY_S = 2 * 24 * 3600
# Below this on SN_MAIN the deploy refuses unless told otherwise: users get at least
# this much public notice of any change to what the router accepts.
MAINNET_MIN_GOVERNANCE_DELAY_S = PRODUCTION_GOVERNANCE_DELAY_S
MAINNET = "SN_MAIN"
# --network NAME -> the chain id its node must report.
NETWORKS: dict[str, str] = {"sepolia": "SN_SEPOLIA", "mainnet": MAINNET}
_SALT_DOMAIN = encode_short_string("obsqra-keeper deploy")
_POLL_S = 0.1

Report = list[tuple[str, str]]
Step = Callable[[str, str], None]


# ---------------------------------------------------------------------------- params


@dataclass(frozen=True)
class FeePolicy:
    """v3 bounds = estimate x ``multiplier`` (amounts and prices), refused above
    ``max_fee_fri`` per transaction: ChainClient's rule (keeper.chain.fees)."""

    multiplier: float = 1.5
    max_fee_fri: int = 10 * 10**18


@dataclass(frozen=True)
class ParamsProfile:
    """What a deploy TOML may say where (devnet and real networks differ)."""

    name: str
    account_indices: bool  # roles may name predeployed accounts by index
    router_defaults: Mapping[str, object]  # [router] keys that may be left out
    protocols_required: bool
    registries: tuple[str, ...]  # words router.fact_registry accepts
    registry_addresses: bool  # router.fact_registry may be a 0x address
    registrar: bool  # roles.registrar (the DevFactRegistry's) is meaningful
    fees: FeePolicy
    receipt_timeout_s: float


DEVNET_PROFILE = ParamsProfile(
    name="devnet",
    account_indices=True,
    router_defaults={REGISTRY_KEY: "dev"},
    protocols_required=True,
    registries=("dev", "integrity"),
    registry_addresses=False,
    registrar=True,
    fees=FeePolicy(1.5, 10**22),  # devnet gas is free play money; declares cost several STRK
    receipt_timeout_s=60.0,
)
NETWORK_PROFILE = ParamsProfile(
    name="network",
    account_indices=False,
    router_defaults={
        REGISTRY_KEY: "integrity",
        "governance_delay_s": PRODUCTION_GOVERNANCE_DELAY_S,
        "direct_verifier": list(DEFAULT_DIRECT_PIN),
        "bootloaded_verifier": [],
    },
    protocols_required=False,
    registries=("integrity",),
    registry_addresses=True,
    registrar=False,
    fees=FeePolicy(),
    receipt_timeout_s=600.0,
)


@dataclass(frozen=True)
class DeployParams:
    """The wanted state, read from a TOML file (config/deploy.devnet.toml,
    config/deploy.sepolia.toml)."""

    metrics: tuple[tuple[int, ...], ...]
    model_params: tuple[int, ...] | None
    router: Mapping[str, int]  # every key of ROUTER_LIMITS
    pins: Mapping[str, tuple[str, ...]]  # PIN_KEYS -> 4 short strings, or () = unset
    oracle: int | str  # a predeployed account index (devnet) or a 0x address
    keepers: tuple[int | str, ...]
    registrar: int | str | None = None  # DevFactRegistry's (devnet only)
    fact_registry: str = "dev"  # 'dev', 'integrity' or a 0x address
    fees: FeePolicy = FeePolicy()
    salt: int | None = None  # UDC salt base; None = random (devnet)
    receipt_timeout_s: float = 600.0


def load_deploy_params(path: Path, profile: ParamsProfile = DEVNET_PROFILE) -> DeployParams:
    """Parse and validate the deploy TOML; every problem is reported at once."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"deploy parameters file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"deploy parameters {path} is a directory, not a TOML file") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read deploy parameters {path}: {exc}") from exc
    return parse_deploy_params(raw, source=str(path), profile=profile)


def parse_deploy_params(
    raw: Mapping[str, Any], *, source: str = "", profile: ParamsProfile = DEVNET_PROFILE
) -> DeployParams:
    problems: list[str] = []
    for key in sorted(set(raw) - set(_TOP_LEVEL_KEYS)):
        problems.append(f"{key} is not a known table ({', '.join(_TOP_LEVEL_KEYS)})")
    protocols = raw.get("protocols")
    metrics: tuple[tuple[int, ...], ...] = ()
    if protocols is not None or profile.protocols_required:
        metrics = _parse_metrics(protocols, problems)
    model_params = _parse_model_params(raw.get("model_params"), problems)
    router, pins, registry = _parse_router(raw.get("router", {}), profile, problems)
    oracle, keepers, registrar = _parse_roles(raw.get("roles", {}), profile, problems)
    fees, salt, timeout = _parse_deploy_tables(raw, profile, problems)
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
        fact_registry=registry,
        fees=fees,
        salt=salt,
        receipt_timeout_s=timeout,
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_metrics(raw: object, problems: list[str]) -> tuple[tuple[int, ...], ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= 16:
        problems.append("[[protocols]] must list 1..16 protocols")
        return ()
    rows: list[tuple[int, ...]] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            problems.append(f"protocols[{i}] must be a table")
            continue
        row: list[int] = []
        for name, limit in zip(PROTOCOL_FIELDS, _PROTOCOL_LIMITS, strict=True):
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
    raw: object, profile: ParamsProfile, problems: list[str]
) -> tuple[dict[str, int], dict[str, tuple[str, ...]], str]:
    """[router]: every governance value the router's constructor takes, and its registry."""
    if not isinstance(raw, dict):
        problems.append("[router] must be a table")
        return {}, {}, ""
    known = [*ROUTER_LIMITS, *PIN_KEYS, REGISTRY_KEY]
    for key in sorted(set(raw) - set(known)):
        problems.append(f"router.{key} is not a known parameter ({sorted(known)})")
    table = {**profile.router_defaults, **raw}
    out: dict[str, int] = {}
    for key, (low, high) in ROUTER_LIMITS.items():
        value = table.get(key)
        if value is None:
            problems.append(f"router.{key} is missing (the router's constructor needs it)")
        elif not _is_int(value) or not low <= value <= high:
            problems.append(f"router.{key} must be an integer in {low}..{high}")
        else:
            out[key] = value
    pins: dict[str, tuple[str, ...]] = {}
    for key in PIN_KEYS:
        pin = _parse_pin(table.get(key), f"router.{key}", problems)
        if pin is not None:
            pins[key] = pin
    return out, pins, _parse_registry_choice(table.get(REGISTRY_KEY), profile, problems)


def _parse_registry_choice(value: object, profile: ParamsProfile, problems: list[str]) -> str:
    words = " or ".join(repr(w) for w in profile.registries)
    if isinstance(value, str) and value in profile.registries:
        return value
    if value == "dev":
        problems.append(
            "router.fact_registry = 'dev': the DevFactRegistry verifies nothing (it records "
            "whatever its registrar says); it exists for a devnet's dev prover only. Use "
            "'integrity' (Integrity's FactRegistry of the chain)"
        )
        return ""
    if profile.registry_addresses and isinstance(value, str) and _address(value) is not None:
        return value
    where = f"{words} or a 0x address" if profile.registry_addresses else words
    problems.append(f"router.fact_registry must be {where}, not {value!r}")
    return ""


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


def _address(value: str) -> int | None:
    """A 0x hex address that fits a felt and is not 0, else None."""
    if not value.startswith("0x"):
        return None
    try:
        number = int(value, 16)
    except ValueError:
        return None
    return number if 0 < number < FIELD_PRIME else None


def _parse_roles(
    raw: object, profile: ParamsProfile, problems: list[str]
) -> tuple[int | str, tuple[int | str, ...], int | str | None]:
    if not isinstance(raw, dict):
        problems.append("[roles] must be a table")
        raw = {}
    default: object = 0 if profile.account_indices else None
    known = ("oracle", "keepers", "registrar") if profile.registrar else ("oracle", "keepers")
    for key in sorted(set(raw) - set(known)):
        hint = " (the DevFactRegistry's: devnet only)" if key == "registrar" else ""
        problems.append(f"roles.{key} is not a role here{hint} ({', '.join(known)})")
    oracle = _parse_account_ref(raw.get("oracle", default), "roles.oracle", profile, problems)
    registrar: int | str | None = None
    if profile.registrar:
        registrar = _parse_account_ref(
            raw.get("registrar", default), "roles.registrar", profile, problems
        )
    keepers_raw = raw.get("keepers", [0] if profile.account_indices else None)
    keepers: tuple[int | str, ...] = ()
    if not isinstance(keepers_raw, list) or not keepers_raw:
        what = "account indices/addresses" if profile.account_indices else "0x addresses"
        problems.append(f"roles.keepers must be a non-empty list of {what}")
    else:
        keepers = tuple(
            _parse_account_ref(k, f"roles.keepers[{i}]", profile, problems)
            for i, k in enumerate(keepers_raw)
        )
    return oracle, keepers, registrar


def _parse_account_ref(
    value: object, where: str, profile: ParamsProfile, problems: list[str]
) -> int | str:
    if profile.account_indices and _is_int(value) and 0 <= value < 1000:
        return value
    if isinstance(value, str) and _address(value) is not None:
        return value
    if value is None:
        problems.append(f"{where} is missing (a 0x address)")
    elif profile.account_indices:
        problems.append(f"{where} must be a predeployed account index or a 0x address")
    else:
        problems.append(f"{where} must be a 0x account address (not 0), not {value!r}")
    return 0


def _parse_deploy_tables(
    raw: Mapping[str, Any], profile: ParamsProfile, problems: list[str]
) -> tuple[FeePolicy, int | None, float]:
    fees_raw, deploy_raw = raw.get("fees", {}), raw.get("deploy", {})
    if not isinstance(fees_raw, dict) or not isinstance(deploy_raw, dict):
        problems.append("[fees] and [deploy] must be tables")
        return profile.fees, None, profile.receipt_timeout_s
    for table, value, keys in (
        ("fees", fees_raw, ("max_fee_fri", "fee_multiplier")),
        ("deploy", deploy_raw, ("salt", "receipt_timeout_s")),
    ):
        for key in sorted(set(value) - set(keys)):
            problems.append(f"{table}.{key} is not a known option ({', '.join(keys)})")
    ceiling = fees_raw.get("max_fee_fri", profile.fees.max_fee_fri)
    if not _is_int(ceiling) or ceiling <= 0:
        problems.append("fees.max_fee_fri must be a positive integer (FRI; 10**18 = 1 STRK)")
        ceiling = profile.fees.max_fee_fri
    multiplier = fees_raw.get("fee_multiplier", profile.fees.multiplier)
    if (
        not isinstance(multiplier, int | float)
        or isinstance(multiplier, bool)
        or not (1.0 <= multiplier <= 3.0)
    ):
        problems.append("fees.fee_multiplier must be a number in 1.0..3.0")
        multiplier = profile.fees.multiplier
    salt = deploy_raw.get("salt")
    if salt is not None and (not _is_int(salt) or not 0 <= salt < 2**64):
        problems.append("deploy.salt must be an integer in 0..2**64-1")
        salt = None
    if salt is None and profile.name != "devnet":
        salt = 0  # real networks: deterministic addresses, known before anything is sent
    timeout = deploy_raw.get("receipt_timeout_s", profile.receipt_timeout_s)
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not (1 <= timeout <= 3600)
    ):
        problems.append("deploy.receipt_timeout_s must be a number of seconds in 1..3600")
        timeout = profile.receipt_timeout_s
    return FeePolicy(float(multiplier), ceiling), salt, float(timeout)


# ---------------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class ContractArtifact:
    name: str
    sierra: str
    casm: str
    abi: list[Any]


def load_artifacts(target_dir: Path, names: Sequence[str]) -> dict[str, ContractArtifact]:
    """Read the Sierra/CASM pairs that scripts/build_contracts.sh (or scarb) wrote."""
    artifacts: dict[str, ContractArtifact] = {}
    for name in names:
        sierra_path = target_dir / f"{PACKAGE}_{name}.contract_class.json"
        casm_path = target_dir / f"{PACKAGE}_{name}.compiled_contract_class.json"
        for path in (sierra_path, casm_path):
            if not path.is_file():
                raise UsageError(
                    f"{path} is missing: build the contracts first (make contracts, "
                    "or scripts/build_contracts.sh)"
                )
        sierra = sierra_path.read_text()
        try:
            abi = json.loads(sierra)["abi"]
            if isinstance(abi, str):
                abi = json.loads(abi)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{sierra_path} is not a Sierra contract class ({exc})") from exc
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


# ---------------------------------------------------------------------------- chain reads


def selector(name: str) -> int:
    from starknet_py.hash.selector import get_selector_from_name

    return int(get_selector_from_name(name))


def make_call(to: int, function: str, calldata: Sequence[int] = ()) -> Any:
    from starknet_py.net.client_models import Call

    return Call(to_addr=to, selector=selector(function), calldata=list(calldata))


async def call_view(client: Any, to: int, function: str, calldata: Sequence[int] = ()) -> list[int]:
    return [int(x) for x in await client.call_contract(make_call(to, function, calldata))]


async def invoke(account: Any, calls: list[Any]) -> int:
    """Send one multicall (v3, resource bounds from estimate) and wait for acceptance
    (tests and the demo's drivers; deployments go through ``Sender``)."""
    from starknet_py.net.client_errors import ClientError

    try:
        sent = await account.execute_v3(calls=calls, auto_estimate=True)
        receipt = await account.client.wait_for_tx(sent.transaction_hash, check_interval=_POLL_S)
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


# ---------------------------------------------------------------------------- the record


@dataclass
class Deployment:
    """What the deployment record (``--out``, e.g. deployments/sepolia.json) holds."""

    chain_id: int
    rpc_url: str  # scheme://host[:port] only: an RPC URL's path or query may hold a key
    deployer: int
    network: str = "devnet"
    block_number: int = 0
    contracts: dict[str, dict[str, int]] = field(default_factory=dict)
    program_hash: int = 0
    child_program_hash: int = 0
    roles: dict[str, Any] = field(default_factory=dict)
    fact_registry: int = 0
    salt: int | None = None
    # The transaction in flight: written before it is broadcast, cleared once it is final.
    pending_tx: dict[str, Any] | None = None

    def address(self, name: str) -> int:
        return self.contracts[name]["address"]

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "chain_id": hex(self.chain_id),
            "chain": chain_name(self.chain_id),
            "rpc_url": self.rpc_url,
            "deployer": hex(self.deployer),
            "block_number": self.block_number,
            "contracts": {
                name: {key: hex(value) for key, value in entry.items()}
                for name, entry in self.contracts.items()
            },
            "fact_registry": hex(self.fact_registry),
            "program_hash": hex(self.program_hash),
            "child_program_hash": hex(self.child_program_hash),
            "roles": self.roles,
            "salt": None if self.salt is None else hex(self.salt),
            "pending_tx": self.pending_tx,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deployment:
        salt = data.get("salt")
        pending = data.get("pending_tx")
        return cls(
            chain_id=int(data["chain_id"], 16),
            rpc_url=str(data.get("rpc_url", "")),
            deployer=int(data["deployer"], 16),
            network=str(data.get("network", "devnet")),
            block_number=int(data.get("block_number", 0)),
            contracts={
                name: {key: int(value, 16) for key, value in entry.items()}
                for name, entry in data.get("contracts", {}).items()
            },
            fact_registry=int(data.get("fact_registry", "0x0"), 16),
            program_hash=int(data.get("program_hash", "0x0"), 16),
            child_program_hash=int(data.get("child_program_hash", "0x0"), 16),
            roles=dict(data.get("roles", {})),
            salt=None if salt is None else int(salt, 16),
            pending_tx=dict(pending) if pending else None,
        )


def read_deployment(path: Path) -> Deployment | None:
    if not path.exists():
        return None
    if path.is_dir():
        raise UsageError(f"--out {path} is a directory; give a file path")
    try:
        return Deployment.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(
            f"{path} is not a deployment record ({exc}); move it away to deploy afresh"
        ) from exc


def write_deployment(path: Path, deployment: Deployment) -> None:
    """Atomic write: an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as out:
        out.write(json.dumps(deployment.to_json(), indent=2) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- transactions


@dataclass
class PlannedTx:
    """One transaction of a run: sent (``tx_hash``) or, in a dry run, estimated only."""

    kind: Literal["declare", "deploy", "invoke"]
    target: str  # what it acts on: a class, a contract to deploy, a contract's functions
    summary: str  # its calldata, summarised
    sender: int
    estimated_fee: int | None = None  # FRI
    max_fee: int | None = None  # the bound it is (would be) sent with
    note: str = ""  # why no estimate (depends on an earlier transaction of this run)
    problem: str = ""  # dry run: why a real run would stop here
    tx_hash: int | None = None
    actual_fee: int | None = None
    block_number: int | None = None


class Sender:
    """One account's transactions: v3 bounds from the estimate (``FeePolicy``), the
    ceiling enforced, the hash journaled before broadcast, the receipt awaited. In a dry
    run only the estimates are made."""

    def __init__(
        self,
        account: Any,
        *,
        chain_id: int,
        fees: FeePolicy,
        dry_run: bool,
        receipt_timeout_s: float,
        journal: Callable[[dict[str, Any] | None], None],
        planned: list[PlannedTx],
    ) -> None:
        self.account = account
        self.address = int(account.address)
        self._chain_id = chain_id
        self._fees = fees
        self.dry_run = dry_run
        self.receipt_timeout_s = receipt_timeout_s
        self._journal = journal
        self.planned = planned

    async def declare(self, artifact: ContractArtifact, casm_hash: int, class_hash: int) -> None:
        sierra_felts = len(json.loads(artifact.sierra).get("sierra_program", []))
        planned = PlannedTx(
            "declare",
            f"class {artifact.name} {class_hash:#x}",
            f"Sierra {sierra_felts} felts, compiled class hash {casm_hash:#x}",
            self.address,
        )

        async def build(nonce: int, bounds: Any) -> Any:
            return await self.account.sign_declare_v3(
                compiled_contract=artifact.sierra,
                compiled_class_hash=casm_hash,
                nonce=nonce,
                resource_bounds=bounds,
            )

        await self._run(planned, build)

    async def invoke(
        self,
        calls: list[Any],
        *,
        kind: Literal["deploy", "invoke"],
        target: str,
        summary: str,
        depends_on: str | None = None,
    ) -> PlannedTx:
        planned = PlannedTx(kind, target, summary, self.address)
        if depends_on is not None and self.dry_run:
            planned.note = f"fee not estimable before {depends_on} (a real run sends that first)"
            self.planned.append(planned)
            return planned

        async def build(nonce: int, bounds: Any) -> Any:
            return await self.account.sign_invoke_v3(calls, nonce=nonce, resource_bounds=bounds)

        await self._run(planned, build)
        return planned

    async def _run(self, planned: PlannedTx, build: Callable[[int, Any], Awaitable[Any]]) -> None:
        from starknet_py.net.client_models import ResourceBoundsMapping

        nonce = int(await self.account.get_nonce(block_number="pre_confirmed"))
        estimate = await self._estimate(planned, await build(nonce, _zero_bounds()))
        if estimate is None:  # dry run: the problem is recorded
            self.planned.append(planned)
            return
        bounds: ResourceBoundsMapping = resource_bounds_for(estimate, self._fees.multiplier)
        planned.estimated_fee, planned.max_fee = int(estimate.overall_fee), max_fee_of(bounds)
        if planned.max_fee > self._fees.max_fee_fri:
            message = (
                f"{planned.kind} {planned.target}: its fee bound {planned.max_fee} FRI "
                f"(estimate {planned.estimated_fee} FRI x fee_multiplier "
                f"{self._fees.multiplier}) exceeds max_fee_fri = {self._fees.max_fee_fri} FRI; "
                "raise [fees] max_fee_fri (or --max-fee-fri) if fees really are this high"
            )
            if not self.dry_run:
                raise FeeAboveCeilingError(
                    "refusing to send " + message,
                    max_fee=planned.max_fee,
                    ceiling=self._fees.max_fee_fri,
                    estimated_fee=planned.estimated_fee,
                )
            planned.problem = message
        if self.dry_run:
            self.planned.append(planned)
            return
        await self._send(planned, await build(nonce, bounds), nonce)

    async def _estimate(self, planned: PlannedTx, unsigned: Any) -> Any:
        from starknet_py.net.client_errors import ClientError

        try:
            estimate = await self.account.estimate_fee(unsigned)
        except ClientError as exc:
            reason = decode_revert_reason(error_text(exc))
            if not self.dry_run:
                raise WouldRevertError(
                    f"{planned.kind} {planned.target} would fail: {reason} (nothing was sent)",
                    reason=reason,
                ) from None
            planned.problem = f"the fee estimate failed: {reason}"
            return None
        unit = getattr(estimate.unit, "value", str(estimate.unit))
        if unit != "FRI":
            raise ChainError(
                f"the node estimated {planned.target} in {unit}, not FRI: v3 transactions pay "
                "in STRK; is the node's RPC version supported?",
                code="fee_unit",
            )
        return estimate

    async def _send(self, planned: PlannedTx, signed: Any, nonce: int) -> None:
        from starknet_py.net.client_errors import ClientError

        tx_hash = int(signed.calculate_hash(self._chain_id))
        what = f"{planned.kind} {planned.target}"
        self._journal(
            {"tx_hash": hex(tx_hash), "nonce": nonce, "sender": hex(self.address), "what": what}
        )
        try:
            if planned.kind == "declare":
                await self.account.client.declare(transaction=signed)
            else:
                await self.account.client.send_transaction(signed)
        except ClientError as exc:
            self._journal(None)  # refused by the node: nothing is in flight
            raise ChainError(
                f"the node refused {what}: {_declare_hint(decode_revert_reason(error_text(exc)))}",
                code="rejected",
            ) from None
        planned.tx_hash = tx_hash
        receipt = await wait_for_receipt(self.account.client, tx_hash, self.receipt_timeout_s, what)
        self._journal(None)
        planned.actual_fee = int(receipt.actual_fee.amount)
        planned.block_number = receipt.block_number
        self.planned.append(planned)
        if receipt.revert_reason is not None or _reverted(receipt):
            raise ChainError(
                f"{what} (tx {tx_hash:#x}) reverted: "
                f"{decode_revert_reason(receipt.revert_reason or '')} "
                f"(fee paid: {planned.actual_fee} FRI)",
                code="reverted",
            )


def _zero_bounds() -> Any:
    from starknet_py.net.client_models import ResourceBoundsMapping

    return ResourceBoundsMapping.init_with_zeros()


def _reverted(receipt: Any) -> bool:
    return str(getattr(receipt.execution_status, "value", receipt.execution_status)) == "REVERTED"


def _declare_hint(reason: str) -> str:
    if "CompiledClassHashMismatch" in reason or "compiled class hash" in reason.lower():
        return (
            f"{reason} (the network compiles Sierra to CASM with another compiler version "
            "than the one that built contracts/target: the declared compiled class hash must "
            "be the network's; see contracts/README.md, Build)"
        )
    return reason


async def wait_for_receipt(client: Any, tx_hash: int, timeout_s: float, what: str) -> Any:
    """The receipt once the transaction is accepted on L2; ReceiptTimeoutError after
    ``timeout_s`` (the journal keeps its hash: the next run settles it)."""
    from starknet_py.net.client_errors import ClientError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            receipt = await client.get_transaction_receipt(tx_hash)
        except ClientError as exc:
            if rpc_code(exc) != TXN_HASH_NOT_FOUND:
                raise
            receipt = None
        status = getattr(getattr(receipt, "finality_status", None), "value", "")
        if receipt is not None and status in ("ACCEPTED_ON_L2", "ACCEPTED_ON_L1"):
            return receipt
        if loop.time() >= deadline:
            raise ReceiptTimeoutError(
                f"{what} (tx {tx_hash:#x}) is not accepted after {timeout_s:.0f} s; it may "
                "still be included: run the same deploy again (it settles this transaction "
                "first)",
                tx_hash=tx_hash,
            )
        await asyncio.sleep(_POLL_S)


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
        for field_name, felt in zip(PIN_FIELDS[_PIN_PATHS[key]], felts, strict=True):
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


# ---------------------------------------------------------------------------- real networks


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
    """The FactRegistry the router will trust: Integrity's of the chain, unless an
    explicit one is given (a URL network must give one); a registry that is not
    Integrity's known one on a known chain needs ``allow_other``."""
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
    await _preflight(client, target.account, registry, params)
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
    ctx.step(f"fact_registry {registry:#x}", "checked")
    await settle_pending(ctx)
    await converge(
        ctx,
        params,
        artifacts,
        roles=roles,
        registry=registry,
        program_hash=target.program_hash,
        child_program_hash=target.child_program_hash,
        oracle_sender=ctx.sender if roles.oracle == target.account else None,
    )
    return DeployResult(record, ctx.report, planned, ctx.addresses, set(ctx.would_deploy))


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
