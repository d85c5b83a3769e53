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

Atlantic: one paid query per job (see ``prover.atlantic``). The request's
``idempotency_key`` is the job's stable key; ``on_atlantic_query`` hears of the job's
query as soon as it exists so the keeper can persist it, and passes it back as
``atlantic_query_id`` on later attempts. Two guards stop calls to Atlantic: the circuit
breaker (repeated failures) and the credit gate (a 402). The credit gate keeps the real
cause: while it is shut every attempt is skipped as ``atlantic_out_of_credit`` telling the
operator to top up, and ``atlantic_credit_status()`` shows it (for /healthz, status and a
metric). Atlantic documents no endpoint that reports credit, so the check is honest about
what it can know: after the cool-down the next job goes through, its free dedupId lookups
first, and its POST is the probe; an accepted POST clears the gate, another 402 shuts it
for another cool-down.
Costs: Stone costs CPU seconds (no money); an Atlantic job costs the operator-configured
price for its job size, and when no price is configured the cost says so.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

from prover.atlantic import (
    AtlanticError,
    AtlanticOutOfCreditError,
    AtlanticQueryRef,
    AtlanticResult,
    OnQuery,
)
from prover.errors import InputError, ProverError
from prover.facts import direct_fact, program_hash
from prover.settings import PolicyName, ProverSettings
from prover.stone import StoneBinaryMissingError, StoneError, StoneResult, public_outputs

ProverKind = Literal["stone", "atlantic", "dev"]
AttemptOutcome = Literal["ok", "failed", "skipped"]
Clock = Callable[[], float]
WallClock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
    """A trace directory to prove, and the job's idempotency key.

    ``idempotency_key`` names the job for Atlantic and must be stable: the same for every
    attempt and restart of the job (the keeper's job id), never derived from an attempt
    counter, or each attempt pays for a new query. ``atlantic_query_id``: the job's query
    as persisted from ``on_atlantic_query`` by an earlier attempt. ``on_atlantic_query`` is
    called as soon as the job's query exists (right after the POST, or when found), before
    any polling: persist ``ref.query_id`` there; if it raises, the attempt fails and the
    next one finds the query by its dedupId."""

    trace_dir: Path
    idempotency_key: str
    program_path: Path | None = None  # default trace_dir/program.json
    program_input_path: Path | None = None  # default trace_dir/program_input.json
    out_dir: Path | None = None  # default trace_dir
    atlantic_query_id: str | None = None
    on_atlantic_query: OnQuery | None = None

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
        job_key: str,
        n_steps: int,
        out_dir: Path,
        query_id: str | None = None,
        on_query: OnQuery | None = None,
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
    """Opens after ``threshold`` consecutive failures and stays open for ``cooldown_s``;
    then one trial goes through (half-open). It remembers the last failure's reason."""

    def __init__(self, threshold: int, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self._threshold = max(1, threshold)
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self.last_failure: str | None = None

    @property
    def failures(self) -> int:
        return self._failures

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
        self.last_failure = None

    def record_failure(self, *, open_now: bool = False, reason: str | None = None) -> None:
        self._failures += 1
        self.last_failure = reason
        if open_now or self._failures >= self._threshold or self._opened_at is not None:
            self._opened_at = self._clock()  # a failed half-open trial reopens it


@dataclass(frozen=True)
class AtlanticCreditStatus:
    """Atlantic credit as the keeper last saw it (for /healthz, status and a metric)."""

    out_of_credit: bool
    since: datetime | None  # the first 402 of this episode (UTC)
    last_refused: datetime | None  # the latest 402
    detail: str | None  # what Atlantic said with it
    next_check_in_s: float  # until a job may try Atlantic again; 0: the next one does

    def as_json(self) -> dict[str, Any]:
        return {
            "out_of_credit": self.out_of_credit,
            "since": None if self.since is None else self.since.isoformat(),
            "last_refused": None if self.last_refused is None else self.last_refused.isoformat(),
            "detail": self.detail,
            "next_check_in_s": round(self.next_check_in_s, 3),
        }


class AtlanticCreditGate:
    """Remembers that Atlantic refused for lack of credit, and shuts Atlantic out for
    ``cooldown_s`` after each refusal. Atlantic documents no balance endpoint, so credit is
    known to be back only when a POST is accepted (``record_accepted``); until then, once
    the cool-down is over, the next job is let through and its POST is the probe."""

    def __init__(self, cooldown_s: float, clock: Clock, wall_clock: WallClock) -> None:
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._refused_at: float | None = None
        self.since: datetime | None = None
        self.last_refused: datetime | None = None
        self.detail: str | None = None

    def record_refusal(self, detail: str) -> None:
        self._refused_at = self._clock()
        self.last_refused = self._wall_clock()
        self.since = self.since or self.last_refused
        self.detail = detail

    def record_accepted(self) -> None:
        self._refused_at = None
        self.since = self.last_refused = self.detail = None

    def next_check_in(self) -> float:
        if self._refused_at is None:
            return 0.0
        return max(0.0, self._cooldown_s - (self._clock() - self._refused_at))

    def blocks(self) -> bool:
        return self.next_check_in() > 0.0

    def status(self) -> AtlanticCreditStatus:
        return AtlanticCreditStatus(
            out_of_credit=self.since is not None,
            since=self.since,
            last_refused=self.last_refused,
            detail=self.detail,
            next_check_in_s=self.next_check_in(),
        )

    def refusal(self) -> AtlanticOutOfCreditError:
        since = self.since.isoformat(timespec="seconds") if self.since else "recently"
        return AtlanticOutOfCreditError(
            f"Atlantic is out of credit (since {since}; Atlantic said: {self.detail}): top up "
            "the credit of the Herodotus Cloud project this API key belongs to. No Atlantic "
            f"call is made for another {self.next_check_in():.0f} s "
            "(prover.circuit_breaker_cooldown_s); then the next job's submission checks again"
        )


class ProvingPolicy:
    """Runs the configured policy. One instance per keeper: it holds the breaker and the
    Atlantic credit gate (pass ``atlantic_credit`` from the previous instance when
    rebuilding it, so a reload does not forget that Atlantic is out of credit)."""

    def __init__(
        self,
        settings: ProverSettings,
        *,
        stone: StoneProver | None,
        atlantic: AtlanticProver | None,
        on_attempt: Callable[[ProofAttempt], None],
        clock: Clock = time.monotonic,
        dev: DevProver | None = None,
        wall_clock: WallClock = _utcnow,
        atlantic_credit: AtlanticCreditGate | None = None,
    ) -> None:
        self._settings = settings
        self._stone = stone
        self._atlantic = atlantic
        self._on_attempt = on_attempt
        self._clock = clock
        self._dev = dev
        self._running: str | None = None
        self.breaker = CircuitBreaker(
            settings.circuit_breaker_failures, settings.circuit_breaker_cooldown_s, clock
        )
        self.atlantic_credit = atlantic_credit or AtlanticCreditGate(
            settings.circuit_breaker_cooldown_s, clock, wall_clock
        )

    @property
    def settings(self) -> ProverSettings:
        return self._settings

    def phase(self) -> str:
        """What the proof in progress is doing, in words (progress reports)."""
        stone_phase = getattr(self._stone, "phase", None)
        if stone_phase:
            return f"Stone: {stone_phase}"
        return self._running or "starting"

    def atlantic_credit_status(self) -> AtlanticCreditStatus:
        return self.atlantic_credit.status()

    @property
    def atlantic_out_of_credit_since(self) -> datetime | None:
        """When Atlantic first refused for lack of credit; None while it has credit."""
        return self.atlantic_credit.since

    def atlantic_allows(self) -> bool:
        """Whether the next job may call Atlantic (neither guard is shut)."""
        return self.breaker.allows() and not self.atlantic_credit.blocks()

    async def prove(
        self, request: ProofRequest, *, policy: PolicyName | None = None
    ) -> ProofOutcome:
        chosen = policy or self._settings.policy
        if chosen == "cheapest":
            # Choosing by measured cost needs the keeper's ledger; alone, prover/ tries
            # Stone first and falls back to Atlantic.
            chosen = "stone_then_atlantic"
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
        summary = "; ".join(
            f"{a.prover}: {a.reason}" + (f" ({a.detail})" if a.detail else "") for a in attempts
        )
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
        self._running = "Stone"
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
        finally:
            self._running = None
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

    def _atlantic_blocked(self) -> AtlanticError | None:
        """Why Atlantic may not be called now, or None. Out of credit comes first: it is
        the real cause and the operator's to fix."""
        if self.atlantic_credit.blocks():
            return self.atlantic_credit.refusal()
        if not self.breaker.allows():
            last = self.breaker.last_failure
            return AtlanticCircuitOpenError(
                f"Atlantic failed {self.breaker.failures} times in a row"
                + (f" (last: {last})" if last else "")
                + f"; not trying it for another {self.breaker.reopens_in():.0f} s "
                "(prover.circuit_breaker_cooldown_s)"
            )
        return None

    def _observed(self, on_query: OnQuery | None) -> OnQuery:
        """The request's callback, after noting that an accepted POST proves credit."""

        def observe(ref: AtlanticQueryRef) -> None:
            if ref.submitted:
                self.atlantic_credit.record_accepted()
            if on_query is not None:
                on_query(ref)

        return observe

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
        blocked = self._atlantic_blocked()
        if blocked is not None:
            self._report(attempts, ProofAttempt("atlantic", "skipped", blocked.code, 0.0, None,
                                                Cost(basis="not run"), blocked.message))
            errors.append(blocked)
            return None
        inputs = await asyncio.to_thread(_atlantic_inputs, request)
        started = self._clock()
        self._running = "Atlantic: query submitted, waiting for the proof"
        try:
            result = await self._atlantic.prove(
                program=inputs.program,
                program_input=inputs.program_input,
                outputs=inputs.outputs,
                job_key=request.idempotency_key,
                n_steps=inputs.n_steps,
                out_dir=request.output_dir,
                query_id=request.atlantic_query_id,
                on_query=self._observed(request.on_atlantic_query),
            )
        except AtlanticError as exc:
            if isinstance(exc, AtlanticOutOfCreditError):
                self.atlantic_credit.record_refusal(exc.detail or exc.message)
            else:
                self.breaker.record_failure(reason=f"{exc.code}: {exc.message}")
            seconds = self._clock() - started
            self._report(attempts, ProofAttempt("atlantic", "failed", exc.code, seconds, None,
                                                self._atlantic_cost(None), exc.message))
            errors.append(exc)
            return None
        finally:
            self._running = None
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
        inputs = await asyncio.to_thread(_atlantic_inputs, request, need_input=False)
        fact = direct_fact(program_hash(inputs.program), inputs.outputs)
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


@dataclass(frozen=True)
class _AtlanticInputs:
    program: dict[str, Any]
    program_input: dict[str, Any]
    outputs: tuple[int, ...]  # the local run's: a remote proof's fact must match them
    n_steps: int  # the trace length: Atlantic's declaredJobSize


def _atlantic_inputs(request: ProofRequest, *, need_input: bool = True) -> _AtlanticInputs:
    """Compiled program, program input, the outputs and the length of the local run."""
    program = _read_json_object(request.program_file, "compiled program")
    program_input = (
        _read_json_object(request.program_input_file, "program input") if need_input else {}
    )
    public_path = request.trace_dir / "public_input.json"
    public_input = _read_json_object(public_path, "public input")
    n_steps = public_input.get("n_steps")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise InputError(f"public input has no valid n_steps: {public_path}")
    return _AtlanticInputs(program, program_input, public_outputs(public_input), n_steps)


__all__ = [
    "AtlanticCircuitOpenError",
    "AtlanticCreditGate",
    "AtlanticCreditStatus",
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
