"""``obsqra-keeper prove TRACE_DIR``: prove a trace directory with Stone, Atlantic or dev.

Settings come from the environment for now (``prover_settings_from_env``, to be replaced
by the keeper's config model): KEEPER_PROVER__<FIELD> for the fields of ProverSettings
(e.g. KEEPER_PROVER__STONE_PROVER_PATH, KEEPER_PROVER__ATLANTIC_BASE_URL,
KEEPER_PROVER__PARAMETER_SET), and the Atlantic API key from the file
KEEPER_ATLANTIC_API_KEY_FILE or $CREDENTIALS_DIRECTORY/atlantic_api_key (systemd's
LoadCredential=). The key is never read from a plain environment variable.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, get_args

import structlog

from keeper.core.errors import ConfigError
from prover.atlantic import AtlanticClient
from prover.errors import InputError
from prover.policy import ProofAttempt, ProofOutcome, ProofRequest, ProvingPolicy
from prover.settings import (
    PARAMETER_SETS,
    POLICY_NAMES,
    AtlanticNetwork,
    AtlanticResultKind,
    PolicyName,
    ProverSettings,
)
from prover.stone import StoneRunner

ENV_PREFIX = "KEEPER_PROVER__"
API_KEY_FILE_ENV = "KEEPER_ATLANTIC_API_KEY_FILE"
_CHOICES: dict[str, tuple[str, ...]] = {
    "policy": POLICY_NAMES,
    "parameter_set": PARAMETER_SETS,
    "atlantic_network": get_args(AtlanticNetwork),
    "atlantic_result": get_args(AtlanticResultKind),
}
_PATH_FIELDS = ("stone_prover_path", "stone_verifier_path")
_MODES: dict[str, PolicyName | None] = {
    "auto": None,
    "stone": "stone_only",
    "atlantic": "atlantic_only",
    "dev": "dev",
}


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "prove",
        help="prove a trace directory (Stone, Atlantic or dev) and print the fact",
        description="Prove TRACE_DIR (written by `obsqra-keeper trace`) with the configured "
        "policy or the prover named by --prover, verify the proof, and print prover, "
        "proof_path, seconds, security_bits, fact_hash and cost. Settings come from "
        f"{ENV_PREFIX}* variables; the Atlantic key from {API_KEY_FILE_ENV} or "
        "$CREDENTIALS_DIRECTORY/atlantic_api_key.",
    )
    parser.add_argument("trace_dir", type=Path, metavar="TRACE_DIR")
    parser.add_argument(
        "--prover",
        choices=tuple(_MODES),
        default="auto",
        help="auto = the configured policy (default stone, then Atlantic)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--config", type=Path, metavar="PATH", help="keeper config file")
    parser.set_defaults(handler=_handle)


def prover_settings_from_env(environ: Mapping[str, str]) -> ProverSettings:
    """ProverSettings from KEEPER_PROVER__* variables and the API key file."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(ProverSettings)}
    for name, spec in fields.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None or name == "atlantic_api_key":
            continue
        try:
            values[name] = _parse_field(name, spec.default, raw)
        except ValueError as exc:
            problems.append(f"{ENV_PREFIX}{name.upper()}={raw!r}: {exc}")
    if ENV_PREFIX + "ATLANTIC_API_KEY" in environ:
        problems.append(
            f"{ENV_PREFIX}ATLANTIC_API_KEY is not read (secrets stay out of the environment): "
            f"put the key in a file named by {API_KEY_FILE_ENV}"
        )
    key = _read_api_key(environ, problems)
    if problems:
        raise ConfigError(problems, source="the environment")
    if key is not None:
        values["atlantic_api_key"] = key
    _default_stone_paths(values, environ)
    return ProverSettings(**values)


def _parse_field(name: str, default: Any, raw: str) -> Any:
    raw = raw.strip()
    if name in _CHOICES:
        if raw not in _CHOICES[name]:
            raise ValueError(f"must be one of {', '.join(_CHOICES[name])}")
        return raw
    if name in _PATH_FIELDS:
        return Path(raw).expanduser() if raw else None
    if name == "fri_step_list":
        return tuple(int(part) for part in raw.replace(" ", "").split(",") if part) or None
    if name == "atlantic_price_by_job_size":  # "XS=0.10,S=0.25"
        return tuple(_price_pair(item) for item in raw.split(",") if item.strip())
    if isinstance(default, bool):
        raise ValueError("booleans are not settable here")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        value = float(raw)
        if value <= 0:
            raise ValueError("must be > 0")
        return value
    return raw or None


def _price_pair(item: str) -> tuple[str, Decimal]:
    size, sep, price = item.partition("=")
    if not sep:
        raise ValueError("expected JOB_SIZE=PRICE pairs, e.g. S=0.25,M=1")
    try:
        return size.strip(), Decimal(price.strip())
    except InvalidOperation as exc:
        raise ValueError(f"{price.strip()!r} is not a price") from exc


def _read_api_key(environ: Mapping[str, str], problems: list[str]) -> str | None:
    named = environ.get(API_KEY_FILE_ENV)
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if named:
        path = Path(named)
    elif credentials and (Path(credentials) / "atlantic_api_key").is_file():
        path = Path(credentials) / "atlantic_api_key"
    else:
        return None
    try:
        key = path.read_text().strip()
    except OSError as exc:
        problems.append(f"cannot read the Atlantic API key file {path}: {exc.strerror}")
        return None
    if not key:
        problems.append(f"the Atlantic API key file {path} is empty")
        return None
    return key


def _default_stone_paths(values: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Unset Stone paths: the verifier next to the prover, else both from PATH."""
    prover = values.get("stone_prover_path")
    if prover is None:
        found = shutil.which("cpu_air_prover", path=environ.get("PATH", ""))
        prover = Path(found) if found else None
        values["stone_prover_path"] = prover
    if values.get("stone_verifier_path") is None:
        sibling = prover.parent / "cpu_air_verifier" if prover is not None else None
        if sibling is not None and sibling.exists():
            values["stone_verifier_path"] = sibling
        else:
            found = shutil.which("cpu_air_verifier", path=environ.get("PATH", ""))
            values["stone_verifier_path"] = Path(found) if found else None


def _idempotency_key(request_dir: Path) -> str:
    """Same trace, same key: a rerun finds the Atlantic query of the previous run."""
    digest = hashlib.sha256()
    for name in ("program.json", "public_input.json", "program_input.json"):
        path = request_dir / name
        if path.is_file():
            digest.update(path.read_bytes())
    return "cli-" + digest.hexdigest()[:32]


async def _prove(
    settings: ProverSettings, request: ProofRequest, mode: PolicyName | None
) -> tuple[ProofOutcome, list[ProofAttempt]]:
    attempts: list[ProofAttempt] = []
    stone = None
    if settings.stone_prover_path is not None and settings.stone_verifier_path is not None:
        stone = StoneRunner(settings)
    atlantic = AtlanticClient(settings) if settings.atlantic_configured else None
    try:
        policy = ProvingPolicy(settings, stone=stone, atlantic=atlantic, on_attempt=attempts.append)
        return await policy.prove(request, policy=mode), attempts
    finally:
        if atlantic is not None:
            await atlantic.aclose()


def outcome_json(outcome: ProofOutcome) -> dict[str, Any]:
    return {
        "prover": outcome.prover,
        "proof_path": str(outcome.proof_path) if outcome.proof_path else None,
        "seconds": round(outcome.seconds, 3),
        "security_bits": outcome.security_bits,
        "fact_hash": hex(outcome.fact_hash),
        "cost": outcome.cost.as_json(),
        "stone_generation": outcome.stone.stone_generation if outcome.stone else None,
        "parameter_set": outcome.stone.parameter_set if outcome.stone else None,
        "attempts": [
            {"prover": a.prover, "outcome": a.outcome, "reason": a.reason,
             "seconds": round(a.seconds, 3)}
            for a in outcome.attempts
        ],
    }


def _settings(args: argparse.Namespace) -> ProverSettings:
    """With a keeper config (--config or KEEPER_CONFIG): its [prover] section and secrets,
    exactly as the daemon would prove (security bits: the config cannot know the router's
    minimum, so the proof is made for 96 unless KEEPER_PROVER__REQUIRED_SECURITY_BITS says
    otherwise). Without one: the KEEPER_PROVER__* variables, so prover/ works on its own."""
    from keeper.core.config import config_path_from, load_config
    from keeper.engine.provers import prover_settings

    path = config_path_from(args.config, os.environ)
    if path is None:
        return prover_settings_from_env(os.environ)
    cfg = load_config(path, os.environ)
    bits = prover_settings_from_env(
        {k: v for k, v in os.environ.items() if k == ENV_PREFIX + "REQUIRED_SECURITY_BITS"}
    ).required_security_bits
    return prover_settings(cfg, required_security_bits=bits)


def _handle(args: argparse.Namespace) -> int:
    if not structlog.is_configured():
        # Keep stdout for the result: through stdlib logging, warnings reach stderr.
        structlog.configure(logger_factory=structlog.stdlib.LoggerFactory())
    trace_dir: Path = args.trace_dir
    if not trace_dir.is_dir():
        raise InputError(f"trace directory not found: {trace_dir}")
    settings = _settings(args)
    request = ProofRequest(trace_dir=trace_dir, idempotency_key=_idempotency_key(trace_dir))
    outcome, _ = asyncio.run(_prove(settings, request, _MODES[args.prover]))
    result = outcome_json(outcome)
    if args.json:
        print(json.dumps(result))
    else:
        for key in ("prover", "proof_path", "seconds", "security_bits", "fact_hash"):
            print(f"{key}: {result[key]}")
        cost = outcome.cost
        money = f"{cost.price} {cost.currency}" if cost.price is not None else "-"
        cpu = f"{cost.cpu_seconds:.2f} CPU s" if cost.cpu_seconds is not None else "-"
        print(f"cost: {money}, {cpu} ({cost.basis})")
    return 0
