"""Typed settings of the proving side (Stone, Atlantic, the policy between them).

One model for everyone: ``prover`` uses ``ProverSettings`` as it is (``obsqra-keeper
prove`` builds it from ``KEEPER_PROVER__*`` variables), and the keeper's ``[prover]``
config section is a subclass of it that adds the keeper's own options, so a default or a
limit is written once. Nothing in ``prover/`` reads the environment.

Two fields are not the operator's: ``required_security_bits`` comes from governance (the
router's minimum) and ``atlantic_api_key`` from a secret file; the keeper sets both with
``model_copy`` at run time. The key is a ``SecretStr``: never in a repr, a dump or a log.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from prover.stone_tools import TOOLS_DIR, StoneBuild, find_stone

PolicyName = Literal["stone_then_atlantic", "stone_only", "atlantic_only", "cheapest", "dev"]
ProverKind = Literal["stone", "atlantic", "dev"]
ParameterSet = Literal["stone6", "stone5", "keccak"]
AtlanticNetwork = Literal["MAINNET", "TESTNET"]
AtlanticResultKind = Literal[
    "PROOF_GENERATION", "PROOF_VERIFICATION_ON_L1", "PROOF_VERIFICATION_ON_L2"
]
AtlanticJobSize = Literal["XS", "S", "M", "L"]

# The provers each policy runs, in the order it tries them: the one list of policy names.
# ``cheapest`` may run either: per job the keeper picks Stone+Integrity or Atlantic from the
# costs it measured (keeper.engine.cheapest) and proves with one of the policies above.
POLICY_PROVERS: dict[PolicyName, tuple[ProverKind, ...]] = {
    "stone_then_atlantic": ("stone", "atlantic"),
    "stone_only": ("stone",),
    "atlantic_only": ("atlantic",),
    "cheapest": ("stone", "atlantic"),
    "dev": ("dev",),
}
POLICY_NAMES: tuple[PolicyName, ...] = tuple(POLICY_PROVERS)
PARAMETER_SETS: tuple[ParameterSet, ...] = ("stone6", "stone5", "keccak")


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]
JOB_SIZES: tuple[AtlanticJobSize, ...] = ("XS", "S", "M", "L")

# Atlantic's declaredJobSize by trace length, the one copy of the table. Source: Herodotus'
# "Sending Query" page (docs.herodotus.cloud/atlantic-api/sending-query): "declaredJobSize
# determines the machine used for trace generation and affects cost", number of steps
# [millions] 0-13 -> S, 13-30 -> M, >30 -> L. The API also accepts XS, but the docs give it
# no step range, so it is never chosen here (a row in front makes it so once one is
# published). Upper bounds are exclusive; anything at or above the last one is L.
ATLANTIC_JOB_SIZE_BOUNDS: tuple[tuple[int, AtlanticJobSize], ...] = (
    (13_000_000, "S"),
    (30_000_000, "M"),
)


def atlantic_job_size(n_steps: int) -> AtlanticJobSize:
    """The Atlantic job size of a trace of ``n_steps`` steps (Atlantic's published table)."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    for bound, size in ATLANTIC_JOB_SIZE_BOUNDS:
        if n_steps < bound:
            return size
    return "L"


def _known_job_sizes(prices: dict[str, Decimal]) -> dict[str, Decimal]:
    unknown = sorted(set(prices) - set(JOB_SIZES))
    if unknown:
        raise ValueError(f"unknown Atlantic job size {', '.join(unknown)} (known: XS, S, M, L)")
    if any(price < 0 for price in prices.values()):
        raise ValueError("a price cannot be negative")
    return prices


class ProverSettings(BaseModel):
    """Everything the Stone runner, the Atlantic client and the policy need."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: PolicyName = "stone_then_atlantic"

    # --- Stone -----------------------------------------------------------------------
    stone_prover_path: Path | None = Field(
        default=None,
        description="cpu_air_prover; unset: the one `make setup` installed "
        "(.tools/stone/bin), else cpu_air_prover on PATH, else Stone is not used",
    )
    stone_verifier_path: Path | None = Field(
        default=None, description="cpu_air_verifier; every proof is verified locally"
    )
    parameter_set: ParameterSet = Field(
        default="stone6",
        description="stone6/stone5: Integrity's verifier-friendly sets (proofs verifiable on "
        "Starknet); keccak: the plain set older CMake-era Stone builds accept",
    )
    # Set by the keeper from the router's min_security_bits, never from local config.
    required_security_bits: int = Field(default=96, ge=1, le=256, exclude=True)
    # Default shape for 96 bits: 5 cosets x 15 queries + 21 PoW bits, last FRI layer 256,
    # the trace rows hashed with keccak (keccak_commitment_layers 1). Measured on the
    # allocation proof (bench/bench_integrity.py, docs/verification-cost.md): 280.3 M L2 gas
    # in 4 transactions (initial 3,916 felts) and 68 CPU s of Stone, against 277.0 M in 5
    # transactions and 134 CPU s for the previous 4 x 19 + 20 all-Poseidon shape. Hashing
    # the 23-column trace rows with Poseidon is most of Stone's time; on-chain a keccak row
    # costs ~2.3 M gas per query, paid back by the 4 queries a 5th coset saves. Each further
    # keccak layer saves ~20 CPU s and costs ~10 M gas; 2 x 38 queries needs 5,010 felts in
    # one transaction (over Starknet's 5,000) and ~409.5 M gas. 21 PoW bits is what 15
    # queries need for 96; Integrity accepts [20, 50); grinding time varies run to run.
    log_n_cosets: int = Field(default=5, ge=1, le=16)
    proof_of_work_bits: int = Field(default=21, ge=20, lt=50)
    last_layer_degree_bound: int = Field(default=256, ge=1)
    fri_step_list: tuple[int, ...] | None = Field(
        default=None, description="operator override of the FRI split; unset: computed"
    )
    # Merkle layers, counted from the bottom (the table rows are the first), that Stone
    # hashes with keccak instead of Poseidon (Integrity's n_verifier_friendly_commitment_
    # layers is set so; stone5/stone6 only). 0: all Poseidon (Integrity's own examples).
    keccak_commitment_layers: int = Field(default=1, ge=0, le=32)
    # Scheduling niceness of the Stone prover process (0: the keeper's own priority). A
    # proof made before it is due (issue 20's "prove ahead") should run at 19 so that it
    # never slows the keeper or a due proof down.
    niceness: int = Field(default=0, ge=0, le=19)
    timeout_s: float = Field(default=900.0, gt=0)
    verify_timeout_s: float = Field(default=120.0, gt=0)
    # Address-space limit (RLIMIT_AS) of the prover process. FACTS §1: 16,384 steps peak
    # at 869 MB RSS; address space runs above RSS, so leave headroom.
    memory_limit_mb: int = Field(default=4096, ge=64)

    # --- Atlantic --------------------------------------------------------------------
    atlantic_base_url: HttpUrl = "https://atlantic.api.herodotus.cloud"
    atlantic_api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    atlantic_network: AtlanticNetwork = "TESTNET"
    atlantic_layout: str = "auto"
    # PROOF_VERIFICATION_ON_L2: Atlantic also verifies the proof in Integrity on Starknet,
    # which registers the fact the router checks.
    atlantic_result: AtlanticResultKind = "PROOF_VERIFICATION_ON_L2"
    atlantic_declared_job_size: AtlanticJobSize | None = Field(
        default=None,
        description="override of the job size declared to Atlantic; unset: chosen from the "
        "trace's n_steps by Atlantic's published table",
    )
    atlantic_price_per_job_size: Annotated[
        dict[str, Decimal], AfterValidator(_known_job_sizes)
    ] = Field(
        default_factory=dict,
        description="your contracted price per Atlantic job size; no public price exists",
    )
    atlantic_price_currency: str = "USD"
    # --- money: what the cheapest policy compares Atlantic's price with ----------------
    strk_usd: Decimal | None = Field(
        default=None,
        gt=0,
        description="your price of one STRK in USD, to weigh Integrity's L2 fees (paid in "
        "STRK) against Atlantic's USD price; the keeper has no price oracle; unset: the "
        "cheapest policy cannot compare and proves stone_then_atlantic",
    )
    cpu_usd_per_hour: Decimal = Field(
        default=Decimal(0),
        ge=0,
        description="what one CPU hour of this machine costs you in USD (Stone's CPU "
        "seconds are priced at it); 0: local CPU is free",
    )
    atlantic_request_timeout_s: float = Field(default=30.0, gt=0)
    atlantic_retry_attempts: int = Field(default=5, ge=1)  # per HTTP call, transient only
    atlantic_retry_budget_s: float = Field(default=120.0, gt=0)  # per HTTP call
    atlantic_backoff_base_s: float = Field(default=1.0, gt=0)
    atlantic_backoff_max_s: float = Field(default=30.0, gt=0)
    atlantic_poll_interval_s: float = Field(default=10.0, gt=0)
    atlantic_poll_max_interval_s: float = Field(default=60.0, gt=0)
    atlantic_deadline_s: float = Field(default=3600.0, gt=0)  # submit-to-DONE, one proof
    # After a POST that got no answer (it may still be accepted), the dedupId is looked up
    # this long before another POST may go out: a 404 meanwhile may be Atlantic still busy.
    atlantic_submit_settle_s: float = Field(default=120.0, gt=0)
    # Paid queries one job may ever create. A job has one query for its whole life; a new
    # one is only submitted when Atlantic reports the previous one FAILED, and a program
    # that fails on Atlantic will usually fail again: this bounds what that can cost.
    atlantic_max_queries_per_job: int = Field(default=3, ge=1)
    # Consecutive failed Atlantic jobs that open the breaker, and how long it stays open.
    circuit_breaker_failures: int = Field(default=3, ge=1)
    circuit_breaker_cooldown_s: float = Field(default=600.0, gt=0)

    # The Stone these settings use, found by ``with_stone`` (where, and what build).
    _stone_build: StoneBuild | None = PrivateAttr(default=None)

    @property
    def stone_build(self) -> StoneBuild | None:
        return self._stone_build

    def with_stone(self, path_env: str | None, *, tools_dir: Path = TOOLS_DIR) -> Self:
        """These settings with Stone's binaries found in the documented order (the
        configured paths, the project's tools directory, ``path_env``) and recorded; the
        same settings when no Stone is anywhere."""
        build = find_stone(
            self.stone_prover_path, self.stone_verifier_path, path_env=path_env,
            tools_dir=tools_dir,
        )
        if build is None:
            return self
        located = self.model_copy(
            update={"stone_prover_path": build.prover, "stone_verifier_path": build.verifier}
        )
        located._stone_build = build
        return located

    def atlantic_price(self, job_size: str | None) -> Decimal | None:
        """The configured price of one Atlantic job of ``job_size``; None when unknown."""
        if job_size is None:
            return None
        return self.atlantic_price_per_job_size.get(job_size)

    def atlantic_declared_size(self, n_steps: int) -> AtlanticJobSize:
        """The declaredJobSize sent with a query: the operator's override, else the table."""
        return self.atlantic_declared_job_size or atlantic_job_size(n_steps)

    @property
    def atlantic_configured(self) -> bool:
        key = self.atlantic_api_key
        return key is not None and bool(key.get_secret_value()) and bool(self.atlantic_base_url)
