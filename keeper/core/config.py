"""Operator configuration: one TOML file, ``KEEPER_…`` environment overrides, secrets from files.

Precedence (highest first): environment ``KEEPER_SECTION__FIELD``, the TOML file, defaults.
The TOML file comes from ``--config PATH`` or ``KEEPER_CONFIG``.

Secrets are never read from the TOML file or from inline environment variables (both
end up in backups, ``ps e``, ``systemctl show``…). Each secret is a file:
``$CREDENTIALS_DIRECTORY/<name>`` (systemd ``LoadCredential[Encrypted]=``) or the path in
``KEEPER_<NAME>_FILE``.

What governance decides on-chain (intervals, thresholds, constraints, security bits,
accepted programs) is deliberately absent: the keeper reads it from the contracts.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from keeper.core.errors import ConfigError
from keeper.core.logs import MIN_SECRET_LEN
from prover.settings import HttpUrl, ProverSettings
from prover.stone_tools import tools_dir_from

ENV_PREFIX = "KEEPER_"
CONFIG_ENV = "KEEPER_CONFIG"

# name -> what it is; the file name under $CREDENTIALS_DIRECTORY and KEEPER_<NAME>_FILE.
SECRET_NAMES: dict[str, str] = {
    "account_private_key": "the keeper account's private key (hex), when no keystore is used",
    "keystore_password": "the password of the keeper account's encrypted keystore",
    "atlantic_api_key": "the Herodotus Atlantic API key",
    "dna_token": "the Apibara DNA v2 stream's bearer token (stream.source = \"dna\")",
}
# Any TOML key that looks like one of these is refused (typos included): containing a
# marker, or ending with a suffix ("dna_token", not "fee_token_address").
_SECRET_KEY_MARKERS = ("private_key", "password", "api_key", "apikey", "secret", "mnemonic")
_SECRET_KEY_SUFFIXES = ("token",)


# The environment load_config was handed (tests pass their own; the daemon passes os.environ).
_ENVIRON: ContextVar[Mapping[str, str]] = ContextVar("keeper_config_environ")


class _MappingEnvSource(EnvSettingsSource):
    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = {k: v for k, v in _ENVIRON.get().items() if not k.endswith("_FILE")}
        return parse_env_vars(
            environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _felt_hex(value: str) -> str:
    text = value.strip().lower()
    if not text.startswith("0x"):
        raise ValueError("must be a 0x-prefixed hex felt, e.g. 0x49d3…")
    try:
        number = int(text, 16)
    except ValueError:
        raise ValueError("is not valid hex") from None
    if number >= 2**251 + 17 * 2**192 + 1:
        raise ValueError("is larger than the Starknet field prime")
    return hex(number)


def _grpc_target(value: str) -> str:
    if "://" in value and not value.startswith(("http://", "https://")):
        raise ValueError("must be host:port or an http(s):// URL")
    return value


FeltHex = Annotated[str, AfterValidator(_felt_hex)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChainConfig(_Section):
    rpc_url: HttpUrl = Field(description="Starknet JSON-RPC endpoint")
    chain_id: str = Field(
        description="expected chain id as a short string (SN_MAIN, SN_SEPOLIA) or hex; "
        "the keeper refuses to start on another chain"
    )
    router_address: FeltHex
    risk_engine_address: FeltHex
    account_address: FeltHex
    keystore_path: Path | None = Field(
        default=None,
        description="encrypted keystore (JSON); its password is the keystore_password secret. "
        "Without it the account_private_key secret is used.",
    )
    fee_multiplier: float = Field(default=1.5, ge=1.0, le=3.0)
    max_fee_fri: int = Field(
        default=10**18, gt=0, description="refuse any transaction whose fee bound exceeds this"
    )
    receipt_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    max_calldata_felts: int = Field(
        default=5000,
        ge=100,
        description="calldata felts the network accepts in one transaction (Starknet "
        "0.14: 5,000); an Integrity verification that needs more is refused before any "
        "transaction. Devnets do not enforce it",
    )
    integrity_flow: Literal["auto", "split"] = Field(
        default="auto",
        description="how a Stone proof is verified through the IntegrityGuard: auto sends "
        "the whole verification in one transaction (verify_proof_full, ~10 M L2 gas less) "
        "when it fits max_calldata_felts, else the split transactions (initial, one per "
        "FRI layer, final); split always sends the split transactions",
    )


def _ws_url(value: str) -> str:
    """A WebSocket endpoint; only its scheme://host[:port] is ever shown (keys hide in paths)."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError("must be a ws:// or wss:// URL with a host")
    return value


def _dna_url(value: str) -> str:
    """scheme://host[:port]: https (TLS) for a hosted stream, http for a local one."""
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be https://host[:port] (TLS) or http://host[:port] (plaintext)")
    if parts.username or parts.password or parts.query or parts.path not in ("", "/"):
        raise ValueError(
            "must be scheme://host[:port] only: no path, query or credentials "
            "(the token is the dna_token secret)"
        )
    return value


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class StreamConfig(_Section):
    source: Literal["rpc", "apibara", "dna"] = Field(
        default="rpc",
        description="rpc: poll the node; dna: an Apibara DNA v2 stream (hosted streams); "
        "apibara: a self-hosted DNA v1alpha2 server (legacy)",
    )
    start_block: int = Field(default=0, ge=0)
    chunk_size: int = Field(default=256, ge=1, le=1024)
    poll_interval_s: float = Field(default=2.0, gt=0, le=300)
    confirmation_depth: int = Field(
        default=0, ge=0, le=1000, description="blocks behind head before events are acted on"
    )
    stall_deadline_s: float = Field(default=300.0, gt=0)
    apibara_url: Annotated[str, AfterValidator(_grpc_target)] = "localhost:7171"
    apibara_finality: Literal["pending", "accepted", "finalized"] = "accepted"
    apibara_batch_size: int = Field(default=10, ge=1, le=1000)
    dna_url: Annotated[str, AfterValidator(_dna_url)] | None = Field(
        default=None,
        description="the DNA v2 stream (source dna), e.g. https://mainnet.starkstream.io",
    )
    dna_finality: Literal["accepted", "finalized"] = "accepted"
    dna_heartbeat_interval_s: int = Field(default=30, ge=10, le=60)

    @model_validator(mode="after")
    def _dna_needs_url(self) -> StreamConfig:
        if self.source == "dna":
            if self.dna_url is None:
                raise ValueError("stream.source = \"dna\" needs stream.dna_url")
            if self.stall_deadline_s <= self.dna_heartbeat_interval_s:
                raise ValueError(
                    "stall_deadline_s must be longer than dna_heartbeat_interval_s "
                    "(a stream that only sends heartbeats is alive)"
                )
        return self
    ws_url: Annotated[str, AfterValidator(_ws_url)] | None = Field(
        default=None,
        description="the node's WebSocket endpoint (rpc source): new-head notifications "
        "trigger polls at once; poll_interval_s stays the fallback",
    )


class ProverConfig(ProverSettings):
    """``[prover]``: prover's own settings model plus what only the keeper needs.

    ``required_security_bits`` is governance's (the router's minimum) and
    ``atlantic_api_key`` a secret file's: neither is accepted here.
    """

    work_dir: Path | None = Field(
        default=None, description="traces and proofs (default: next to the store)"
    )
    dev_security_bits: int = Field(default=96, ge=1, le=256)

    @model_validator(mode="before")
    @classmethod
    def _not_the_operators(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        if "required_security_bits" in data:
            raise ValueError(
                "required_security_bits is not an option: the keeper proves for the "
                "router's min_security_bits, which governance sets on-chain"
            )
        if "atlantic_api_key" in data:
            raise ValueError(
                "atlantic_api_key is a secret, not an option; " + _secret_hint("atlantic_api_key")
            )
        return data

    def runtime(self, secrets: Secrets, *, required_security_bits: int) -> ProverConfig:
        """These settings with the two values that are not the operator's: the security
        bits governance requires and the Atlantic key from its secret file."""
        return self.model_copy(
            update={
                "required_security_bits": required_security_bits,
                "atlantic_api_key": secrets.atlantic_api_key,
            }
        )


class JobsConfig(_Section):
    """How a failed job of the current epoch runs again (see keeper/engine/retries.py)."""

    retry_cooldown_s: float = Field(
        default=60.0, gt=0, description="wait before a failed job runs again (doubles per run)"
    )
    retry_cooldown_max_s: float = Field(default=3600.0, gt=0)
    max_paid_failures: int = Field(
        default=3,
        ge=1,
        description="failures that cost money (reverted transactions, Atlantic query limit) "
        "after which the epoch is parked until `obsqra-keeper jobs retry EPOCH`",
    )
    pending_change_margin_s: int = Field(
        default=3600,
        ge=0,
        description="a rebalance waits while a pending governance change that would make "
        "the router refuse it has its eta within this many seconds (a job started now may "
        "reach the chain after it applies)",
    )

    prove_ahead: bool = Field(
        default=True,
        description="prove the coming rebalance in the background as soon as its inputs are "
        "on-chain (Stone only; registered only once it is due; discarded if the inputs "
        "change first), so a due rebalance needs only its transactions",
    )
    prove_ahead_niceness: int = Field(
        default=19,
        ge=0,
        le=19,
        description="scheduling niceness of the Stone process of a proof made ahead",
    )

    @model_validator(mode="after")
    def _max_not_below_base(self) -> JobsConfig:
        if self.retry_cooldown_max_s < self.retry_cooldown_s:
            raise ValueError("retry_cooldown_max_s must be at least retry_cooldown_s")
        return self


class FundsConfig(_Section):
    """The keeper account's own STRK: when /healthz warns, and what a rebalance costs
    before the ledger knows (see keeper/engine/funds.py). The margin on fee estimates is
    ``chain.fee_multiplier``, the one transactions are signed with."""

    min_rebalances: int = Field(
        default=10,
        ge=0,
        description="/healthz is degraded while the balance pays for fewer rebalances than "
        "this (at the ledger's median cost per executed allocation)",
    )
    poll_interval_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="how often the balance is read besides start-up and after each "
        "transaction of the keeper",
    )
    default_cost_per_allocation_fri: int = Field(
        default=3 * 10**17,
        gt=0,
        description="FRI one rebalance costs (verification + execution) until the ledger "
        "has an executed allocation to take the median of",
    )
    fee_token_address: FeltHex = Field(
        default="0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d",
        description="the STRK fee token (the same on mainnet, Sepolia and starknet-devnet)",
    )


class StoreConfig(_Section):
    path: Path = Path("/var/lib/obsqra-keeper/keeper.sqlite3")


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise"
    )


class HealthConfig(_Section):
    enabled: bool = True
    host: Literal["127.0.0.1", "::1", "localhost"] = "127.0.0.1"
    port: int = Field(default=9464, ge=1, le=65535)


class Secrets(BaseModel):
    """Values loaded from secret files. Never serialised; redacted in logs."""

    model_config = ConfigDict(frozen=True)

    account_private_key: SecretStr | None = None
    keystore_password: SecretStr | None = None
    atlantic_api_key: SecretStr | None = None
    dna_token: SecretStr | None = None

    def values(self) -> list[str]:
        out = []
        for name in SECRET_NAMES:
            secret = getattr(self, name)
            if secret is not None and secret.get_secret_value():
                out.append(secret.get_secret_value())
        return out


class _EnvThenInit(BaseSettings):
    """Sources: the environment given to ``load_config`` (not os.environ), then the init
    values (the TOML contents). No .env file, no secrets directory."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_MappingEnvSource(settings_cls), init_settings)


class KeeperConfig(_EnvThenInit):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    chain: ChainConfig
    stream: StreamConfig = StreamConfig()
    prover: ProverConfig = ProverConfig()
    jobs: JobsConfig = JobsConfig()
    funds: FundsConfig = FundsConfig()
    store: StoreConfig = StoreConfig()
    log: LogConfig = LogConfig()
    health: HealthConfig = HealthConfig()
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)

    @model_validator(mode="after")
    def _token_only_over_tls(self) -> KeeperConfig:
        url = self.stream.dna_url
        if self.stream.source == "dna" and url and self.secrets.dna_token is not None:
            parts = urlsplit(url)
            if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
                raise ValueError(
                    "stream.dna_url is plain http to another host: the dna_token would "
                    "cross the network in clear; use https://"
                )
        return self

    def redacted(self) -> dict[str, Any]:
        """The effective config for display; secrets shown only as set/unset."""
        data = self.model_dump(mode="json")
        data["secrets"] = {
            name: ("<set>" if getattr(self.secrets, name) is not None else "<unset>")
            for name in SECRET_NAMES
        }
        return data


def _looks_secret(key: str) -> bool:
    return any(m in key for m in _SECRET_KEY_MARKERS) or key.endswith(_SECRET_KEY_SUFFIXES)


def _find_inline_secrets(table: Mapping[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found += _find_inline_secrets(value, f"{path}.")
        elif _looks_secret(key.lower().replace("-", "_")):
            found.append(path)
    return found


def _secret_hint(name: str) -> str:
    return (
        f"put {SECRET_NAMES.get(name, 'it')} in a file readable only by the keeper and set "
        f"{ENV_PREFIX}{name.upper()}_FILE=/path/to/file, or load it as the systemd "
        f"credential '{name}' (LoadCredentialEncrypted={name}:…)"
    )


def load_secrets(environ: Mapping[str, str]) -> Secrets:
    problems = []
    for key in environ:
        if not key.startswith(ENV_PREFIX):
            continue
        bare = key[len(ENV_PREFIX) :].lower()
        if bare in SECRET_NAMES:
            problems.append(
                f"{key}: secrets are not accepted inline in the environment; {_secret_hint(bare)}"
            )
    values: dict[str, SecretStr] = {}
    creds_dir = environ.get("CREDENTIALS_DIRECTORY")
    for name in SECRET_NAMES:
        path: Path | None = None
        env_file = environ.get(f"{ENV_PREFIX}{name.upper()}_FILE")
        if env_file:
            path = Path(env_file)
        elif creds_dir and (Path(creds_dir) / name).is_file():
            path = Path(creds_dir) / name
        if path is None:
            continue
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            problems.append(f"secret {name}: cannot read {path}: {exc.strerror}")
            continue
        if len(text) < MIN_SECRET_LEN:
            problems.append(
                f"secret {name}: {path} holds {len(text)} characters; "
                f"at least {MIN_SECRET_LEN} are required"
            )
            continue
        values[name] = SecretStr(text)
    if problems:
        raise ConfigError(problems, source="secrets")
    return Secrets(**values)


def _format_validation_error(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        kind = err["type"]
        if kind == "missing":
            lines.append(f"{where}: required but missing")
        elif kind == "extra_forbidden":
            lines.append(
                f"{where}: unknown option (check the spelling against config/keeper.example.toml)"
            )
        else:
            given = err.get("input")
            shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
            lines.append(f"{where}: {err['msg']}{shown}")
    return lines


def config_path_from(cli_path: Path | None, environ: Mapping[str, str]) -> Path | None:
    if cli_path is not None:
        return cli_path
    env = environ.get(CONFIG_ENV)
    return Path(env) if env else None


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> KeeperConfig:
    """Read, validate and return the config; ``ConfigError`` lists every problem at once."""
    environ = dict(os.environ if environ is None else environ)
    source = str(path) if path is not None else "environment"
    table: dict[str, Any] = {}
    if path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError([f"cannot read config file {path}: {exc.strerror}"]) from exc
        try:
            table = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"not valid TOML: {exc}"], source=source) from exc
    inline = _find_inline_secrets(table)
    if inline:
        raise ConfigError(
            [
                f"{key}: secrets are not accepted in the config file; "
                + _secret_hint(key.rsplit(".", 1)[-1])
                for key in inline
            ],
            source=source,
        )
    if "secrets" in table:
        raise ConfigError(["secrets: not a config section; " + _secret_hint("…")], source=source)
    secrets = load_secrets(environ)
    token = _ENVIRON.set(environ)
    try:
        cfg = KeeperConfig(**table, secrets=secrets)
        stone = cfg.prover.with_stone(environ.get("PATH"), tools_dir=tools_dir_from(environ))
        return cfg.model_copy(update={"prover": stone})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc), source=source) from None
    finally:
        _ENVIRON.reset(token)


class _ProverOnly(_EnvThenInit):
    """``[prover]`` from ``KEEPER_PROVER__*`` variables alone (``prove`` without a config)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", frozen=True
    )

    prover: ProverConfig = ProverConfig()


def load_prover_config(environ: Mapping[str, str]) -> tuple[ProverConfig, Secrets]:
    """The ``[prover]`` section from the environment only, and the secrets; the same
    validation and messages as ``load_config``."""
    environ = dict(environ)
    secrets = load_secrets(environ)
    token = _ENVIRON.set(environ)
    try:
        prover = _ProverOnly().prover
        return prover.with_stone(environ.get("PATH"), tools_dir=tools_dir_from(environ)), secrets
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc), source="the environment") from None
    finally:
        _ENVIRON.reset(token)
