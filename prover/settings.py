"""Typed settings of the proving side (Stone, Atlantic, the policy between them).

The keeper's config model builds one ``ProverSettings``; nothing in ``prover/`` reads the
environment. The Atlantic API key is excluded from ``repr`` so it never reaches a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

PolicyName = Literal["stone_then_atlantic", "stone_only", "atlantic_only", "dev"]
ParameterSet = Literal["stone6", "stone5", "keccak"]
AtlanticNetwork = Literal["MAINNET", "TESTNET"]
AtlanticResultKind = Literal[
    "PROOF_GENERATION", "PROOF_VERIFICATION_ON_L1", "PROOF_VERIFICATION_ON_L2"
]

POLICY_NAMES: tuple[PolicyName, ...] = ("stone_then_atlantic", "stone_only", "atlantic_only", "dev")
PARAMETER_SETS: tuple[ParameterSet, ...] = ("stone6", "stone5", "keccak")


@dataclass(frozen=True)
class ProverSettings:
    """Everything the Stone runner, the Atlantic client and the policy need."""

    policy: PolicyName = "stone_then_atlantic"

    # --- Stone -----------------------------------------------------------------------
    stone_prover_path: Path | None = None  # None: Stone is not configured (policy skips it)
    stone_verifier_path: Path | None = None
    # stone6/stone5: Integrity's verifier-friendly hashes (needs a 2024 Bazel build);
    # keccak: the plain set that the CMake-era builds accept (not verifiable on-chain).
    parameter_set: ParameterSet = "stone6"
    required_security_bits: int = 96
    # Default FRI shape = the fastest one reaching 96 bits in FACTS §1 on a small-layout
    # program (4,096 steps): 2 cosets x 38 queries + 20 PoW bits proved in 5.3 s / 156 MB
    # against 7.3 s for 2 x 36 + 24 and 10.3 s / 229 MB for 4 x 19 + 20. The price is a
    # bigger proof (295 KB vs 189 KB), i.e. more Integrity calldata; 20 PoW bits is the
    # lowest Integrity accepts ([20, 50)), and PoW grinding time varies wildly run to run.
    log_n_cosets: int = 2
    proof_of_work_bits: int = 20
    last_layer_degree_bound: int = 64
    # Operator override of the FRI split (e.g. to reproduce a run); None = computed.
    fri_step_list: tuple[int, ...] | None = None
    timeout_s: float = 900.0
    verify_timeout_s: float = 120.0
    # Address-space limit (RLIMIT_AS) of the prover process. FACTS §1: 16,384 steps peak
    # at 869 MB RSS; address space runs above RSS, so leave headroom.
    memory_limit_mb: int = 4096

    # --- Atlantic --------------------------------------------------------------------
    atlantic_base_url: str = "https://atlantic.api.herodotus.cloud"
    atlantic_api_key: str | None = field(default=None, repr=False)
    atlantic_network: AtlanticNetwork = "TESTNET"
    atlantic_layout: str = "auto"
    atlantic_result: AtlanticResultKind = "PROOF_VERIFICATION_ON_L2"
    atlantic_declared_job_size: str | None = None
    # No public price list exists (FACTS §5): the operator configures one per job size.
    atlantic_price_by_job_size: tuple[tuple[str, Decimal], ...] = ()
    atlantic_price_currency: str = "USD"
    atlantic_request_timeout_s: float = 30.0
    atlantic_retry_attempts: int = 5  # per HTTP call, transient failures only
    atlantic_retry_budget_s: float = 120.0  # per HTTP call, seconds across retries
    atlantic_backoff_base_s: float = 1.0
    atlantic_backoff_max_s: float = 30.0
    atlantic_poll_interval_s: float = 10.0
    atlantic_poll_max_interval_s: float = 60.0
    atlantic_deadline_s: float = 3600.0  # submit-to-DONE for one proof
    atlantic_breaker_failures: int = 3  # consecutive failed jobs that open the breaker
    atlantic_breaker_cooldown_s: float = 900.0

    def atlantic_price(self, job_size: str | None) -> Decimal | None:
        """The configured price of one Atlantic job of ``job_size``; None when unknown."""
        if job_size is None:
            return None
        return dict(self.atlantic_price_by_job_size).get(job_size)

    @property
    def atlantic_configured(self) -> bool:
        return bool(self.atlantic_api_key) and bool(self.atlantic_base_url)
