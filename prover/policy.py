"""Which prover proves a trace: Stone first, Atlantic as fallback, or one of them, or none.

Policies (``ProverSettings.policy``):
- ``stone_then_atlantic`` (default): local Stone; if it is missing, fails or times out,
  Atlantic (unless its circuit breaker is open).
- ``stone_only`` / ``atlantic_only``.
- ``dev``: no proof at all. The outcome carries the direct fact and ``prover="dev"``; the
  keeper registers that fact in its DevFactRegistry itself (through the ``DevProver``
  hook when one is given). Never for real money: the keeper decides when it is allowed.

Every attempt, successful or not, is reported to ``on_attempt`` as a ``ProofAttempt``;
the keeper turns those into ledger rows. ``prover/`` knows nothing about the store.
Costs: Stone costs CPU seconds (no money); an Atlantic job costs the operator-configured
price for its job size, and when no price is configured the cost says so.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

from prover.atlantic import AtlanticError, AtlanticOutOfCreditError, AtlanticResult
from prover.errors import InputError, ProverError
from prover.facts import direct_fact, program_hash
from prover.settings import PolicyName, ProverSettings
from prover.stone import StoneBinaryMissingError, StoneError, StoneResult, public_outputs

ProverKind = Literal["stone", "atlantic", "dev"]
AttemptOutcome = Literal["ok", "failed", "skipped"]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Cost:
    """What one attempt cost, and how that number was obtained."""

    cpu_seconds: float | None = None
    price: Decimal | None = None  # None: no money, or no configured price (see basis)
    currency: str | None = None
    basis: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 3),
            "price": None if self.price is None else str(self.price),
            "currency": self.currency,
            "basis": self.basis,
        }


@dataclass(frozen=True)
class ProofAttempt:
    prover: ProverKind
    outcome: AttemptOutcome
    reason: str | None  # the error code when not ok
    seconds: float
    proof_bytes: int | None
    cost: Cost
    detail: str = ""  # the error message (operator-readable, no secrets)


@dataclass(frozen=True)
class ProofRequest:
    """A trace directory to prove, and the job's idempotency key (Atlantic's dedupId)."""

    trace_dir: Path
    idempotency_key: str
    program_path: Path | None = None  # default trace_dir/program.json
    program_input_path: Path | None = None  # default trace_dir/program_input.json
    out_dir: Path | None = None  # default trace_dir

    @property
    def program_file(self) -> Path:
        return self.program_path or self.trace_dir / "program.json"

    @property
    def program_input_file(self) -> Path:
        return self.program_input_path or self.trace_dir / "program_input.json"

    @property
    def output_dir(self) -> Path:
        return self.out_dir or self.trace_dir


@dataclass(frozen=True)
class ProofOutcome:
    prover: ProverKind
    proof_path: Path | None
    fact_hash: int
    security_bits: int | None  # None: unknown here (Atlantic) or no proof (dev)
    seconds: float
    cost: Cost
    attempts: tuple[ProofAttempt, ...]
    stone: StoneResult | None = None
    atlantic: AtlanticResult | None = None


class StoneProver(Protocol):
    async def prove(
        self, trace_dir: Path, *, out_dir: Path | None = None, program_path: Path | None = None
    ) -> StoneResult: ...


class AtlanticProver(Protocol):
    async def prove(
        self,
        *,
        program: Mapping[str, Any],
        program_input: Mapping[str, Any],
        outputs: Sequence[int],
        dedup_id: str,
        out_dir: Path,
    ) -> AtlanticResult: ...


class DevProver(Protocol):
    """The keeper's hook for the ``dev`` policy: register ``fact_hash`` in the
    DevFactRegistry (no proof exists)."""

    async def register_dev_fact(self, fact_hash: int, request: ProofRequest) -> None: ...


class ProvingFailedError(ProverError):
    """No prover produced an accepted proof; ``attempts`` says what each one did."""

    code = "no_proof"

    def __init__(self, message: str, attempts: Sequence[ProofAttempt]) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class AtlanticCircuitOpenError(AtlanticError):
    code = "atlantic_circuit_open"


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures (at once on out-of-credit) and stays
    open for ``cooldown_s``; then one trial goes through (half-open)."""

    def __init__(self, threshold: int, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self._threshold = max(1, threshold)
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    def allows(self) -> bool:
        if self._opened_at is None:
            return True
        return self._clock() - self._opened_at >= self._cooldown_s

    def reopens_in(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._cooldown_s - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def record_failure(self, *, open_now: bool = False) -> None:
        self._failures += 1
        if open_now or self._failures >= self._threshold or self._opened_at is not None:
            self._opened_at = self._clock()  # a failed half-open trial reopens it


class ProvingPolicy:
    """Runs the configured policy. One instance per keeper: it holds the breaker."""

    def __init__(
        self,
        settings: ProverSettings,
        *,
        stone: StoneProver | None,
        atlantic: AtlanticProver | None,
        on_attempt: Callable[[ProofAttempt], None],
        clock: Clock = time.monotonic,
        dev: DevProver | None = None,
    ) -> None:
        self._settings = settings
        self._stone = stone
        self._atlantic = atlantic
        self._on_attempt = on_attempt
        self._clock = clock
        self._dev = dev
        self.breaker = CircuitBreaker(
            settings.atlantic_breaker_failures, settings.atlantic_breaker_cooldown_s, clock
        )

    async def prove(
        self, request: ProofRequest, *, policy: PolicyName | None = None
    ) -> ProofOutcome:
        chosen = policy or self._settings.policy
        attempts: list[ProofAttempt] = []
        if chosen == "dev":
            return await self._dev_outcome(request, attempts)
        errors: list[ProverError] = []
        if chosen in ("stone_then_atlantic", "stone_only"):
            stone_outcome = await self._try_stone(request, attempts, errors)
            if stone_outcome is not None:
                return stone_outcome
            if chosen == "stone_only" or self._atlantic is None:
                raise errors[-1]
        atlantic_outcome = await self._try_atlantic(request, attempts, errors)
        if atlantic_outcome is not None:
            return atlantic_outcome
        if len(errors) == 1:
            raise errors[0]
        summary = "; ".join(f"{a.prover}: {a.reason}" for a in attempts)
        raise ProvingFailedError(
            f"no prover produced a proof ({summary}); see the attempts for what to fix",
            attempts,
        )

    # --- provers ---------------------------------------------------------------------

    def _report(self, attempts: list[ProofAttempt], attempt: ProofAttempt) -> None:
        attempts.append(attempt)
        self._on_attempt(attempt)

    async def _try_stone(
        self, request: ProofRequest, attempts: list[ProofAttempt], errors: list[ProverError]
    ) -> ProofOutcome | None:
        if self._stone is None:
            missing = StoneBinaryMissingError(
                "Stone is not configured (prover.stone_prover_path)"
            )
            self._report(attempts, ProofAttempt("stone", "skipped", missing.code, 0.0, None,
                                                Cost(basis="not run"), missing.message))
            errors.append(missing)
            return None
        started = self._clock()
        try:
            result = await self._stone.prove(
                request.trace_dir, out_dir=request.out_dir, program_path=request.program_path
            )
        except StoneError as exc:
            seconds = self._clock() - started
            self._report(attempts, ProofAttempt("stone", "failed", exc.code, seconds, None,
                                                Cost(basis="not measured (failed run)"),
                                                exc.message))
            errors.append(exc)
            return None
        cost = Cost(cpu_seconds=result.cpu_seconds, basis="Stone CPU seconds (no money)")
        seconds = self._clock() - started
        self._report(attempts, ProofAttempt("stone", "ok", None, seconds, result.proof_bytes,
                                            cost))
        return ProofOutcome(
            prover="stone",
            proof_path=result.proof_path,
            fact_hash=result.fact_hash,
            security_bits=result.security_bits,
            seconds=seconds,
            cost=cost,
            attempts=tuple(attempts),
            stone=result,
        )

    async def _try_atlantic(
        self, request: ProofRequest, attempts: list[ProofAttempt], errors: list[ProverError]
    ) -> ProofOutcome | None:
        if self._atlantic is None:
            missing = AtlanticError(
                "Atlantic is not configured (no API key)", code="atlantic_not_configured"
            )
            self._report(attempts, ProofAttempt("atlantic", "skipped", missing.code, 0.0, None,
                                                Cost(basis="not run"), missing.message))
            errors.append(missing)
            return None
        if not self.breaker.allows():
            opened = AtlanticCircuitOpenError(
                "Atlantic failed repeatedly; not trying it for another "
                f"{self.breaker.reopens_in():.0f} s (prover.atlantic_breaker_cooldown_s)"
            )
            self._report(attempts, ProofAttempt("atlantic", "skipped", opened.code, 0.0, None,
                                                Cost(basis="not run"), opened.message))
            errors.append(opened)
            return None
        program, program_input, outputs = await asyncio.to_thread(_atlantic_inputs, request)
        started = self._clock()
        try:
            result = await self._atlantic.prove(
                program=program,
                program_input=program_input,
                outputs=outputs,
                dedup_id=request.idempotency_key,
                out_dir=request.output_dir,
            )
        except AtlanticError as exc:
            self.breaker.record_failure(open_now=isinstance(exc, AtlanticOutOfCreditError))
            seconds = self._clock() - started
            self._report(attempts, ProofAttempt("atlantic", "failed", exc.code, seconds, None,
                                                self._atlantic_cost(None), exc.message))
            errors.append(exc)
            return None
        self.breaker.record_success()
        seconds = self._clock() - started
        cost = self._atlantic_cost(result.job_size)
        self._report(attempts, ProofAttempt("atlantic", "ok", None, seconds, result.proof_bytes,
                                            cost))
        return ProofOutcome(
            prover="atlantic",
            proof_path=result.proof_path,
            fact_hash=result.fact_hash,
            security_bits=None,
            seconds=seconds,
            cost=cost,
            attempts=tuple(attempts),
            atlantic=result,
        )

    def _atlantic_cost(self, job_size: str | None) -> Cost:
        if job_size is None:
            # A failed query may or may not be billed; we cannot tell, and say so.
            return Cost(basis="Atlantic job size unknown: no price recorded")
        price = self._settings.atlantic_price(job_size)
        if price is None:
            return Cost(basis=f"no configured price for Atlantic job size {job_size}")
        return Cost(
            price=price,
            currency=self._settings.atlantic_price_currency,
            basis=f"configured price for Atlantic job size {job_size}",
        )

    async def _dev_outcome(
        self, request: ProofRequest, attempts: list[ProofAttempt]
    ) -> ProofOutcome:
        started = self._clock()
        program, _, outputs = await asyncio.to_thread(_atlantic_inputs, request, need_input=False)
        fact = direct_fact(program_hash(program), outputs)
        if self._dev is not None:
            await self._dev.register_dev_fact(fact, request)
        seconds = self._clock() - started
        cost = Cost(basis="dev: no proof")
        self._report(attempts, ProofAttempt("dev", "ok", None, seconds, None, cost))
        return ProofOutcome("dev", None, fact, None, seconds, cost, tuple(attempts))


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{what} is not readable JSON: {path} ({exc})") from exc
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object: {path}")
    return value


def _atlantic_inputs(
    request: ProofRequest, *, need_input: bool = True
) -> tuple[dict[str, Any], dict[str, Any], tuple[int, ...]]:
    """Compiled program, program input, and the outputs of the local run (whose fact a
    remote proof must match)."""
    program = _read_json_object(request.program_file, "compiled program")
    program_input = (
        _read_json_object(request.program_input_file, "program input") if need_input else {}
    )
    public_input = _read_json_object(request.trace_dir / "public_input.json", "public input")
    return program, program_input, public_outputs(public_input)


__all__ = [
    "AtlanticCircuitOpenError",
    "AtlanticProver",
    "CircuitBreaker",
    "Cost",
    "DevProver",
    "ProofAttempt",
    "ProofOutcome",
    "ProofRequest",
    "ProverKind",
    "ProvingFailedError",
    "ProvingPolicy",
    "StoneProver",
]
