"""``obsqra-keeper prove TRACE_DIR``: prove a trace directory with Stone, Atlantic or dev.

Settings: the keeper config's ``[prover]`` section when a config is given (``--config`` or
``KEEPER_CONFIG``), else the same options from ``KEEPER_PROVER__<OPTION>`` variables (e.g.
KEEPER_PROVER__STONE_PROVER_PATH, KEEPER_PROVER__ATLANTIC_BASE_URL; lists and tables as
JSON, e.g. KEEPER_PROVER__FRI_STEP_LIST='[0,4,4,3]'). The Atlantic API key comes from the
file KEEPER_ATLANTIC_API_KEY_FILE or $CREDENTIALS_DIRECTORY/atlantic_api_key (systemd's
LoadCredential=), never from a plain environment variable.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import structlog

from keeper.core.config import config_path_from, load_config, load_prover_config
from keeper.engine.provers import build_proving_policy
from prover.errors import InputError
from prover.policy import ProofAttempt, ProofOutcome, ProofRequest
from prover.settings import PolicyName, ProverSettings

API_KEY_FILE_ENV = "KEEPER_ATLANTIC_API_KEY_FILE"
ENV_PREFIX = "KEEPER_PROVER__"
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
    parser.add_argument(
        "--security-bits",
        type=_security_bits,
        default=96,
        metavar="N",
        help="security bits the proof must reach (the router's min_security_bits; default 96)",
    )
    parser.set_defaults(handler=_handle)


def _security_bits(text: str) -> int:
    try:
        bits = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= bits <= 256:
        raise argparse.ArgumentTypeError(f"{bits} is not in 1..256")
    return bits


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
    policy, atlantic = build_proving_policy(settings, on_attempt=attempts.append)
    try:
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
    exactly as the daemon would prove. Without one: the KEEPER_PROVER__* variables; either
    way Stone is found as the daemon finds it (config, the tools directory `make setup`
    installs into, PATH), so prover/ works on its own. The security bits are
    --security-bits: a trace alone cannot know the router's minimum."""
    path = config_path_from(args.config, os.environ)
    if path is None:
        section, secrets = load_prover_config(os.environ)
    else:
        cfg = load_config(path, os.environ)
        section, secrets = cfg.prover, cfg.secrets
    return section.runtime(secrets, required_security_bits=args.security_bits)


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
