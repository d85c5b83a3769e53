"""The deploy TOML (config/deploy.*.toml): its values, checked all at once, and the
limits the contracts enforce on them (``keeper.chain.deploy`` runs the deployment)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from keeper.chain.codec import FIELD_PRIME
from keeper.chain.governance import (
    VerificationPath,
)
from keeper.core.errors import ConfigError, UsageError

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
PIN_PATHS: dict[str, VerificationPath] = {
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
