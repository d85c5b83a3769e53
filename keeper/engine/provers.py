"""The proving side of the keeper, built from the typed config: one place maps the
operator's ``[prover]`` section, the Atlantic key secret and the router's on-chain
``min_security_bits`` onto ``prover.ProverSettings`` and a ``ProvingPolicy``."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path

from keeper.core.config import KeeperConfig
from prover.atlantic import AtlanticClient
from prover.policy import ProofAttempt, ProvingPolicy
from prover.settings import ProverSettings
from prover.stone import StoneRunner

STONE_PATH_ENV = ("KEEPER_PROVER__STONE_PROVER_PATH", "KEEPER_PROVER__STONE_VERIFIER_PATH")
STONE_BINARIES = ("cpu_air_prover", "cpu_air_verifier")


def locate_stone(environ: Mapping[str, str]) -> tuple[Path, Path] | None:
    """The Stone pair a tool outside the daemon should use (demo, bench, the real-Stone
    test): each binary from its KEEPER_PROVER__STONE_*_PATH, else from PATH, the verifier
    also beside the prover; None unless both are there."""
    search = environ.get("PATH")
    found: list[Path] = []
    for env, name in zip(STONE_PATH_ENV, STONE_BINARIES, strict=True):
        named = environ.get(env) or shutil.which(name, path=search)
        if not named and found:
            named = str(found[0].parent / name)
        if not named or not Path(named).is_file():
            return None
        found.append(Path(named))
    return found[0], found[1]


def prover_settings(cfg: KeeperConfig, *, required_security_bits: int) -> ProverSettings:
    """Security bits come from governance (the router's minimum), never from local config."""
    p = cfg.prover
    key = cfg.secrets.atlantic_api_key
    return ProverSettings(
        policy=p.policy,
        stone_prover_path=p.stone_prover_path,
        stone_verifier_path=p.stone_verifier_path,
        parameter_set=p.parameter_set,
        required_security_bits=required_security_bits,
        log_n_cosets=p.log_n_cosets,
        proof_of_work_bits=p.proof_of_work_bits,
        timeout_s=p.timeout_s,
        memory_limit_mb=p.memory_limit_mb,
        atlantic_base_url=p.atlantic_base_url,
        atlantic_api_key=None if key is None else key.get_secret_value(),
        atlantic_network=p.atlantic_network,
        atlantic_layout=p.atlantic_layout,
        atlantic_result=p.atlantic_result,
        atlantic_price_by_job_size=tuple(
            (size, Decimal(str(price))) for size, price in p.atlantic_price_per_job_size.items()
        ),
        atlantic_deadline_s=p.atlantic_deadline_s,
        atlantic_breaker_failures=p.circuit_breaker_failures,
        atlantic_breaker_cooldown_s=p.circuit_breaker_cooldown_s,
    )


def build_proving_policy(
    cfg: KeeperConfig,
    *,
    on_attempt: Callable[[ProofAttempt], None],
    required_security_bits: int,
) -> tuple[ProvingPolicy, AtlanticClient | None]:
    """The policy, and the Atlantic client the caller must ``aclose()`` when done."""
    settings = prover_settings(cfg, required_security_bits=required_security_bits)
    stone = (
        StoneRunner(settings)
        if settings.stone_prover_path is not None and settings.stone_verifier_path is not None
        else None
    )
    atlantic = AtlanticClient(settings) if settings.atlantic_configured else None
    policy = ProvingPolicy(settings, stone=stone, atlantic=atlantic, on_attempt=on_attempt)
    return policy, atlantic
