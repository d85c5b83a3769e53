"""Advancing a job by one state: the work behind each move of ``keeper.store.jobs``.

Each ``step`` reads the job's persisted state, does the one piece of work that leads out
of it, and records the move (``JobStore.advance``) — so a crash anywhere resumes at the
last recorded state and repeats at most that one piece of work, which is made safe to
repeat:

- ``detected``: read the router and RiskEngine at one block; if the epoch moved, the job
  is superseded; else run the model in proof mode on exactly those inputs (off the event
  loop) → ``traced``.
- ``traced`` / ``proving``: prove with the policy the router will accept (Stone, Atlantic
  keyed by the job id so a restart finds the query instead of paying twice, or dev on a
  devnet) → ``proved``.
- ``proved``: name the ONE verification the router will accept
  (``keeper.engine.acceptance``: the job's fact, the router's pin for the proof's path,
  at least ``min_security_bits``), computed locally and checked with the registry's
  ``get_verification``; if the registry already holds it, nothing is sent; else the dev
  registrar registers it (devnet only), or an Atlantic job waits for Atlantic's own
  registration of such a verification → ``fact_registered``, the verification hash
  stored on the job.
- ``fact_registered``: re-read the chain (the epoch may have moved, the fact may have been
  consumed), then sign ``execute_allocation(output, verification_hash)``; the transaction
  hash is persisted (``submitted``) *before* it is broadcast.
- ``submitted``: wait for the receipt. Succeeded → ``confirmed``; reverted → the fee is
  still recorded, and the job is superseded (another keeper won the epoch) or failed
  with the decoded reason. A reverted transaction is never a success. A refusal that
  says the job's output no longer fits the router (its inputs or constraints changed
  since the trace) fails the run for an immediate re-run on the new state.

Failures that may pass (node unreachable, receipt not yet there, prover down) count as
attempts in the current state; when the step has been failing for longer than the
retry window the run fails with the last reason. A failed run is followed by another
after a cool-down, or parked by a money rule (``keeper.engine.retries``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from keeper.chain import (
    ChainClient,
    ChainUnreachableError,
    FeeAboveCeilingError,
    NonceError,
    ReceiptTimeoutError,
    RouterState,
    SendUncertainError,
    ShuttingDownError,
    TransactionRejectedError,
    TxOutcome,
    WouldRevertError,
)
from keeper.core import faults
from keeper.core.errors import KeeperError, StoreError
from keeper.core.logs import bind_job, get_logger
from keeper.devnet.dev_prover import DevProver
from keeper.engine import cheapest
from keeper.engine.acceptance import (
    Refusal,
    Requirement,
    accepted_verification,
    accepts,
    dev_security_bits,
    path_of,
    pick_listed,
    requirement,
)
from keeper.engine.ahead import AheadProver
from keeper.engine.funds import INSUFFICIENT_FUNDS
from keeper.engine.funds_guard import FundsGuard
from keeper.engine.policy import AcceptedProvers
from keeper.engine.progress import proof_progress
from keeper.engine.registrar import (
    IntegrityRegistrar,
    Pending,
    RegistrationRevertedError,
)
from keeper.engine.retries import RetryRules
from keeper.ops.metrics import KeeperMetrics
from keeper.store.ahead import AheadProof
from keeper.store.jobs import Job, JobState, JobStore, StaleJobState
from keeper.store.ledger import CostEntry, Ledger
from prover import facts
from prover.atlantic import AtlanticQueryLimitError, AtlanticQueryRef
from prover.errors import InfeasibleAllocation, InputError, ProverError
from prover.integrity import IntegrityProofError
from prover.model import AllocationInputs
from prover.policy import ProofAttempt, ProofRequest, ProvingPolicy
from prover.settings import PolicyName
from prover.swiftness import SwiftnessError, SwiftnessRunner
from prover.trace import generate_trace

_log = get_logger("keeper.engine.worker")

# Revert reasons that mean "someone else already executed this epoch": our job lost the
# race (or a retry of our own landed), it did not fail.
SUPERSEDING_REASONS = ("output epoch != current epoch", "fact already consumed")
# Revert reasons that mean "the output no longer fits the router's current state" (new
# metrics or model params, a governance change applied mid-job): the run fails and the
# job runs again at once, on the new state.
STALE_OUTPUT_REASONS = (
    "stale inputs commitment",
    "max_single != governance",
    "min_div != governance",
    "n != RiskEngine count",
)
_TRANSIENT = (
    ChainUnreachableError,
    NonceError,
    ReceiptTimeoutError,
    SendUncertainError,
    TransactionRejectedError,
    FeeAboveCeilingError,  # fees move; the ceiling is the operator's, so retry then give up
)


@dataclass(frozen=True)
class ProgramIdentity:
    """What this keeper proves: the compiled program and its hashes."""

    compiled: dict[str, Any]
    program_hash: int  # Poseidon over the bytecode: direct (Stone, dev) facts
    child_program_hash: int  # Pedersen chain: bootloaded (Atlantic) facts
    # Pedersen hash over the bytecode: the program hash swiftness reports.
    swiftness_program_hash: int = 0


@dataclass(frozen=True)
class ProofCheck:
    """The local pre-check of Stone proofs: swiftness, built for this Stone version."""

    runner: SwiftnessRunner
    stone_version: str


class JobWorker:
    def __init__(
        self,
        *,
        jobs: JobStore,
        ledger: Ledger,
        chain: ChainClient,
        dev_prover: DevProver | None,
        program: ProgramIdentity,
        work_dir: Path,
        dev_security_bits: int,
        metrics: KeeperMetrics | None = None,
        retry: RetryRules | None = None,
        receipt_timeout_s: float = 60.0,
        fact_wait_s: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._jobs = jobs
        self._ledger = ledger
        self._chain = chain
        # Set by the daemon after construction: the policy reports to on_proof_attempt.
        self.proving: ProvingPolicy | None = None
        self._dev = dev_prover
        self._program = program
        self._work_dir = work_dir
        self._dev_bits = dev_security_bits
        self._metrics = metrics
        self._retry = retry or RetryRules()
        self._receipt_timeout_s = receipt_timeout_s
        self._fact_wait_s = fact_wait_s
        self._clock = clock
        self.accepted: AcceptedProvers | None = None  # set by the daemon from governance
        self.swiftness: ProofCheck | None = None  # set by the daemon for Stone policies
        self.registrar: IntegrityRegistrar | None = None  # set by the daemon for Stone
        self.funds: FundsGuard | None = None  # set by the daemon: no tx a job cannot finish
        self.ahead: AheadProver | None = None  # set by the daemon: proofs made ahead
        self._proving_job: Job | None = None

    # ---------------------------------------------------------------------- dispatch
    async def step(self, job: Job) -> Job:
        handlers: dict[JobState, Callable[[Job], Awaitable[Job]]] = {
            JobState.DETECTED: self._trace,
            JobState.TRACED: self._prove,
            JobState.PROVING: self._prove,
            JobState.PROVED: self._register_fact,
            JobState.FACT_REGISTERED: self._submit,
            JobState.SUBMITTED: self._confirm,
        }
        handler = handlers[job.state]
        with bind_job(job_id=job.id, epoch=job.epoch, state=job.state.value):
            try:
                return await handler(job)
            except (ShuttingDownError, StoreError):
                raise  # shutdown, or a store we cannot write: the daemon's business
            except StaleJobState:
                return self._jobs.require(job.id)  # moved meanwhile: the next step re-reads
            except InfeasibleAllocation as exc:
                return self._fail(job, exc.code, str(exc))
            except _TRANSIENT as exc:
                return self._retry_or_fail(job, exc.code, str(exc))
            except WouldRevertError as exc:
                return self._after_revert(job, exc.reason, sent=False)
            except AtlanticQueryLimitError as exc:
                # Every query this job may pay for FAILED: only the operator spends more.
                return self._fail(job, exc.code, str(exc), paid=True, park=True)
            except RegistrationRevertedError as exc:
                return self._fail(job, exc.code, str(exc), paid=True)
            except IntegrityProofError as exc:
                # The proof cannot go to Integrity as it is (too large, unparsable): retrying
                # the same step would not change it; the next run proves again.
                return self._fail(job, exc.code, f"{exc} (no transaction was sent)")
            except ProverError as exc:
                # A prover that crashed or an Atlantic outage may pass; bad input will not.
                if isinstance(exc, InputError):
                    return self._fail(job, exc.code, str(exc))
                return self._retry_or_fail(job, exc.code, str(exc))
            except KeeperError as exc:
                # Not transient: a wrong answer from the chain, bad calldata, a registrar
                # that refuses this keeper. The job fails with the reason; the keeper lives.
                return self._fail(job, exc.code, str(exc))

    def _fail(
        self,
        job: Job,
        code: str,
        reason: str,
        *,
        paid: bool = False,
        park: bool = False,
        rerun_now: bool = False,
    ) -> Job:
        """End this run. It runs again after a cool-down (at once with ``rerun_now``)
        unless a money rule parks it: ``paid`` counts this failure as one that cost
        money, ``park`` parks at once."""
        current = self._jobs.require(job.id)
        now = self._clock()
        retry_after = (
            None
            if park
            else self._retry.retry_after(
                now=now, run=current.run, paid_failures=current.paid_failures + int(paid)
            )
        )
        if rerun_now and retry_after is not None:
            retry_after = now
        if retry_after is None:
            _log.error("job.parked", code=code, reason=reason, run=current.run,
                       hint=f"obsqra-keeper jobs retry {current.epoch}")
        else:
            _log.error("job.failed", code=code, reason=reason, run=current.run,
                       retry_at=retry_after.isoformat(timespec="seconds"))
        return self._jobs.fail(current, code, reason, retry_after=retry_after, paid=paid)

    def _retry_or_fail(self, job: Job, code: str, reason: str) -> Job:
        """A failed attempt that may pass: retried with backoff until the step has been
        failing for the whole retry window, then the run fails."""
        current = self._jobs.require(job.id)
        attempts = self._jobs.record_attempt_failure(current, code, reason)
        current = self._jobs.require(job.id)
        if self._step_gave_up(current):
            return self._fail(
                current,
                code,
                f"still failing after {self._retry.step_window_s:.0f} s ({attempts} attempts): "
                f"{reason}",
            )
        _log.warning("job.attempt_failed", code=code, reason=reason, attempts=attempts)
        return current

    def _step_gave_up(self, job: Job) -> bool:
        if job.failing_since is None:
            return False
        return self._retry.step_gives_up(datetime.fromisoformat(job.failing_since), self._clock())

    def _after_revert(self, job: Job, reason: str, *, sent: bool) -> Job:
        current = self._jobs.require(job.id)
        if any(r in reason for r in SUPERSEDING_REASONS):
            _log.info("job.superseded", reason=reason, sent=sent)
            return self._jobs.supersede(current, f"the router refused: {reason}")
        if any(r in reason for r in STALE_OUTPUT_REASONS):
            _log.info("job.stale", reason=reason, sent=sent)
            return self._fail(
                current,
                "stale_output",
                f"the router refused the output ({reason}): its state changed since the job "
                "traced; running the job again on the new state",
                paid=sent,
                rerun_now=True,
            )
        return self._fail(current, "reverted" if sent else "would_revert", reason, paid=sent)

    async def _epoch_moved(self, job: Job) -> RouterState | None:
        """The router state when it is still at the job's epoch, else None (superseded)."""
        state = await self._chain.router_state()
        return state if state.epoch == job.epoch else None

    # ---------------------------------------------------------------------- states
    async def _trace(self, job: Job) -> Job:
        inputs, state = await self._chain.allocation_inputs()
        if state.epoch != job.epoch:
            return self._jobs.supersede(job, f"the router is at epoch {state.epoch}")
        if self.ahead is not None:
            made = await self.ahead.take(job.id, job.epoch, inputs)
            if made is not None:
                return self._adopt(job, made)
        trace_dir = self._work_dir / job.id.replace(":", "_") / "trace"
        started = time.monotonic()
        result, cpu_s = await asyncio.to_thread(_trace_in_thread, inputs, trace_dir)
        wall = time.monotonic() - started
        self._ledger.record(
            None,
            CostEntry(
                job_id=job.id,
                kind="trace",
                prover=None,
                outcome="ok",
                wall_s=wall,
                cpu_s=cpu_s,
                n_steps=result.n_steps,
            ),
        )
        _log.info("job.traced", n_steps=result.n_steps, steps=result.steps, seconds=round(wall, 3))
        job = self._jobs.advance(
            job,
            JobState.TRACED,
            inputs_json=json.dumps(inputs.to_json()),
            output_json=json.dumps([str(v) for v in result.output]),
            trace_dir=str(result.dir),
            n_steps=result.n_steps,
            program_hash=hex(self._program.program_hash),
        )
        faults.crash_point("traced")
        return job

    def _adopt(self, job: Job, made: AheadProof) -> Job:
        """detected → traced → proving → proved with a proof made ahead of exactly the
        job's inputs (no trace, no prover run). A crash in between resumes in ``_prove``,
        which finds the proof the job took."""
        if job.state == JobState.DETECTED:
            job = self._jobs.advance(
                job,
                JobState.TRACED,
                detail=f"traced ahead (proof {made.id})",
                inputs_json=made.inputs_json,
                output_json=made.output_json,
                trace_dir=made.trace_dir,
                n_steps=made.n_steps,
                program_hash=made.program_hash,
            )
        if job.state == JobState.TRACED:
            job = self._jobs.advance(job, JobState.PROVING)
        job = self._jobs.advance(
            job,
            JobState.PROVED,
            detail=f"proved ahead (proof {made.id})",
            prover="stone",
            proof_path=made.proof_path,
            fact_hash=made.fact_hash,
            security_bits=made.security_bits,
        )
        _log.info("job.proved_ahead", proof_id=made.id, n_steps=made.n_steps)
        faults.crash_point("proved")
        return job

    def _taken_ahead(self, job: Job) -> AheadProof | None:
        """The proof made ahead this job took before a crash, if it proves the job's output."""
        if self.ahead is None:
            return None
        made = self.ahead.used_by(job.id)
        if made is None or made.output_json != job.output_json:
            return None
        return made

    async def _prove(self, job: Job) -> Job:
        taken = self._taken_ahead(job)
        if taken is not None:
            return self._adopt(job, taken)
        if self.ahead is not None:
            await self.ahead.make_way("a job needs the prover")  # one prover at a time
        if job.state == JobState.TRACED:
            job = self._jobs.advance(job, JobState.PROVING)
        accepted = self.accepted
        if accepted is None or not accepted.provers:
            # The daemon halts before this; a job must never prove for nothing.
            return self._retry_or_fail(job, "no_accepted_prover", "no prover's proof is accepted")
        policy = accepted.effective_policy
        output = job.output
        if policy == "dev":
            fact = facts.direct_fact(self._program.program_hash, output)
            job = self._jobs.advance(
                job,
                JobState.PROVED,
                prover="dev",
                fact_hash=hex(fact),
                security_bits=self._dev_bits,
            )
            faults.crash_point("proved")
            return job
        if self.proving is None:
            return self._fail(job, "no_prover", f"policy {policy} has no prover configured")
        if accepted.policy == "cheapest":
            policy = self._cheapest_policy(job, accepted, policy)
        request = self._proof_request(job)

        self._proving_job = job
        proving = self.proving
        expected = self._ledger.recent_proof_seconds(
            "atlantic" if policy == "atlantic_only" else "stone", job.n_steps
        )
        try:
            async with proof_progress(proving.phase, expected):
                outcome = await proving.prove(request, policy=policy)
        finally:
            self._proving_job = None
        if outcome.prover != "dev" and self._metrics is not None:
            self._metrics.proof_done(outcome.prover, outcome.seconds)
        if outcome.prover == "stone" and outcome.proof_path is not None:
            try:
                await self.precheck(outcome.proof_path, job.output)
            except SwiftnessError as exc:
                # Before any gas: a proof Integrity would refuse is never sent.
                return self._fail(job, exc.code, f"{exc} (no transaction was sent)")
        job = self._jobs.advance(
            job,
            JobState.PROVED,
            prover=outcome.prover,
            proof_path=None if outcome.proof_path is None else str(outcome.proof_path),
            fact_hash=hex(outcome.fact_hash),
            security_bits=outcome.security_bits,
            atlantic_query_id=(None if outcome.atlantic is None else outcome.atlantic.query_id),
        )
        faults.crash_point("proved")
        return job

    def _cheapest_policy(
        self, job: Job, accepted: AcceptedProvers, fallback: PolicyName | None
    ) -> PolicyName | None:
        """The ``cheapest`` policy: Stone+Integrity or Atlantic for this job, from what
        the ledger measured (keeper.engine.cheapest), decided once per proving run."""
        assert self.proving is not None
        settings = self.proving.settings
        candidates = [
            p
            for p in accepted.provers
            if (p == "stone" and settings.stone_prover_path is not None)
            or (p == "atlantic" and self.proving.atlantic_allows())
        ]
        if not candidates:
            return fallback  # the policy's own error says what is missing
        now = self._clock()
        allocations = self._ledger.executed_allocations(
            confirmed_since=now - cheapest.MAX_FIGURE_AGE,
            atlantic_price_per_job_size=settings.atlantic_price_per_job_size,
            job_size_for_n_steps=settings.atlantic_declared_size,
        )
        decision = cheapest.decide(
            allocations,
            settings=settings,
            n_steps=job.n_steps,
            candidates=candidates,
            now=now,
            has_atlantic_query=self._proof_request(job).atlantic_query_id is not None,
        )
        _log.info("job.prover_chosen", **decision.as_log())
        return decision.policy

    async def precheck(self, proof_path: Path, outputs: list[int]) -> None:
        """swiftness (Integrity's verifier, in Rust) on a Stone proof: it must verify, and
        the program and output it proves must be the trace's (``outputs``); a job's proof
        or one made ahead. Set by the daemon; None only where no Stone proof is ever
        registered (the dev policy)."""
        check = self.swiftness
        if check is None:
            return
        result = await check.runner.precheck(
            proof_path,
            stone_version=check.stone_version,
            expected_program_hash=self._program.swiftness_program_hash,
            expected_outputs=outputs,
        )
        _log.info(
            "job.proof_prechecked",
            verifier=result.config.name,
            security_bits=result.security_bits,
            seconds=round(result.wall_seconds, 3),
        )

    def _proof_request(self, job: Job) -> ProofRequest:
        """One paid Atlantic query per job and output, for the job's whole life: the key
        is the job id and a digest of the output (a later run on other inputs proves
        something else), and a query already created for that key is resumed."""
        digest = hashlib.sha256(str(job.output_json).encode()).hexdigest()[:16]
        job_key = f"{job.id}/{digest}"
        known = job.atlantic_query_id
        if job.atlantic_dedup_id is None or not job.atlantic_dedup_id.startswith(job_key + "#"):
            known = None  # that query proves another output

        def on_query(ref: AtlanticQueryRef) -> None:
            # Committed before anything else can fail: a crash from here on resumes it.
            current = self._jobs.require(job.id)
            self._jobs.set_columns(
                current, atlantic_query_id=ref.query_id, atlantic_dedup_id=ref.dedup_id
            )
            if ref.replaces is not None:
                _log.warning(
                    "job.atlantic_query_replaced",
                    failed_query=ref.replaces.query_id,
                    reason=ref.replaces.reason,
                    new_query=ref.query_id,
                )

        return ProofRequest(
            trace_dir=Path(str(job.trace_dir)),
            idempotency_key=job_key,
            atlantic_query_id=known,
            on_atlantic_query=on_query,
        )

    def on_proof_attempt(self, attempt: ProofAttempt) -> None:
        """ProvingPolicy's ``on_attempt``: one ledger row per attempt of the job in proof."""
        job = self._proving_job
        if job is None:
            _log.error("proof_attempt_without_job", prover=attempt.prover)
            return
        stone = attempt.prover == "stone"
        if attempt.outcome != "ok" and self._metrics is not None and attempt.prover == "stone":
            self._metrics.fallback("stone", "atlantic")
        self._ledger.record(
            None,
            CostEntry(
                job_id=job.id,
                kind="proof",
                prover=attempt.prover,
                outcome="ok" if attempt.outcome == "ok" else "failed",
                reason=attempt.reason
                if attempt.outcome != "skipped"
                else f"skipped: {attempt.reason}",
                wall_s=attempt.seconds,
                cpu_s=attempt.cost.cpu_seconds if stone else None,
                proof_bytes=attempt.proof_bytes,
                n_steps=job.n_steps,
                atlantic_price=None if attempt.cost.price is None else float(attempt.cost.price),
            ),
        )

    async def _register_fact(self, job: Job) -> Job:
        """proved → fact_registered: the verification the router will accept, registered."""
        state, inputs_changed = await self._router_now(job)
        if state.epoch != job.epoch:
            return self._jobs.supersede(
                job, "the router's epoch moved before the fact was registered"
            )
        fact = int(str(job.fact_hash), 16)
        gov = state.governance
        needed = requirement(path_of(job.prover), job.output, fact, gov)
        if isinstance(needed, Refusal):
            return self._fail(job, needed.code, needed.reason)
        if job.prover == "atlantic":
            return await self._await_atlantic_verification(job, needed, gov.fact_registry)
        # dev: the bits it registers; stone: the bits the proof has.
        bits = (
            dev_security_bits(self._dev_bits, gov.min_security_bits)
            if job.prover == "dev"
            else job.security_bits
        )
        if bits is None:
            return self._fail(job, "no_security_bits", "the proved job records no security bits")
        wanted = accepted_verification(needed, bits)
        if isinstance(wanted, Refusal):
            return self._fail(
                job, wanted.code, f"{wanted.reason}: raise the Stone parameters' security bits"
            )
        verification = hex(wanted.verification_hash)
        found = await self._chain.get_verification(gov.fact_registry, wanted.verification_hash)
        if accepts(needed, found):
            if job.prover == "stone" and self.registrar is not None:
                # The transaction that registered it may be ours, sent before a crash: its
                # fee goes to the ledger once, before the job moves on.
                waiting = await self.registrar.settle_in_flight(job)
                if waiting is not None:
                    _log.info("job.registration_pending", reason=waiting.reason)
                    return self._jobs.require(job.id)
            await self._record_unseen_registration_fee(job)
            _log.info(
                "job.fact_already_registered", fact_hash=hex(fact), verification_hash=verification
            )
            return self._jobs.advance(
                job,
                JobState.FACT_REGISTERED,
                detail="already registered",
                verification_hash=verification,
                security_bits=bits,
            )
        if inputs_changed:
            return self._fail(
                job,
                "stale_output",
                "the router's inputs changed since the job traced: the router would refuse "
                "this proof, so its fact is not registered; running the job again on the new "
                "inputs",
                rerun_now=True,
            )
        if job.prover == "stone":
            return await self._register_with_integrity(
                job, needed, gov.fact_registry, wanted.verification_hash
            )
        if job.prover == "dev" and self._dev is not None:
            # dev: no proof exists; the devnet's DevFactRegistry takes the keeper's word
            # (DevProver refuses any real chain), under the router's direct pin only.

            if (
                self.funds is not None
                and gov.direct_pin is not None
                and await self._waits_for_funds(
                    job,
                    [ChainClient.register_fact_call(gov.fact_registry, fact, bits, gov.direct_pin)],
                    wanted.verification_hash,
                )
            ):
                return self._jobs.require(job.id)

            async def persist_hash(tx_hash: int) -> None:
                # Its fee is recorded even when its receipt is never seen (see above).
                self._jobs.set_columns(self._jobs.require(job.id), fact_tx_hash=hex(tx_hash))

            proof = await self._dev.register(
                job.output,
                program_hash=self._program.program_hash,
                security_bits=bits,
                before_send=persist_hash,
            )
            self.record_fee(job, "fact_registration", proof.tx)
            if proof.verification_hash != wanted.verification_hash:
                return self._fail(
                    job,
                    "verification_mismatch",
                    f"the dev registrar registered verification {proof.verification_hash:#x}, "
                    f"not {verification} (the router's pin or registry changed meanwhile)",
                )
            job = self._jobs.advance(
                job,
                JobState.FACT_REGISTERED,
                fact_tx_hash=hex(proof.tx.tx_hash),
                verification_hash=verification,
                security_bits=bits,
            )
            faults.crash_point("fact_registered")
            return job
        return self._fail(
            job,
            "no_fact_registrar",
            f"a {job.prover} proof's fact is not registered and no registrar for it is set up "
            "(the dev registrar runs on a devnet with the dev policy only)",
        )

    async def _router_now(self, job: Job) -> tuple[RouterState, bool]:
        """The router's state, and for a Stone job whether its inputs are no longer those
        the job traced (read together, one call): the router would refuse such a proof
        (stale inputs commitment), so nothing is paid to register it. Other jobs (dev,
        Atlantic) and a job without recorded inputs have nothing to compare."""
        if job.prover != "stone" or job.inputs_json is None:
            return await self._chain.router_state(), False
        inputs, state = await self._chain.allocation_inputs()
        now = json.loads(json.dumps(inputs.to_json()))
        return state, state.epoch == job.epoch and now != json.loads(job.inputs_json)

    async def _register_with_integrity(
        self, job: Job, needed: Requirement, registry: int, wanted: int
    ) -> Job:
        """A Stone proof's fact, registered by Integrity's own verification of the proof
        through the guard: one ``verify_proof_full`` when it fits a transaction, else the
        split transactions, one worker step sending as many as it can (each one persisted
        before its broadcast); the job stays ``proved`` while a receipt is due."""
        if self.registrar is None:
            return self._fail(
                job,
                "no_fact_registrar",
                "Stone proofs are registered by Integrity's FactRegistry, and this keeper has "
                "no registrar for the router's fact_registry (see the start-up log)",
            )
        progress = await self.registrar.register(
            job,
            registry=registry,
            pin=needed.config,
            min_security_bits=needed.min_security_bits,
        )
        if isinstance(progress, Pending):
            if progress.code != INSUFFICIENT_FUNDS:  # that one is logged once, when it begins
                _log.info("job.registration_pending", reason=progress.reason)
            return self._jobs.require(job.id)
        if progress.verification_hash != wanted:
            return self._fail(
                job,
                "verification_mismatch",
                f"Integrity registered verification {progress.verification_hash:#x}, not the "
                f"{wanted:#x} the router will be pointed at",
            )
        job = self._jobs.advance(
            self._jobs.require(job.id),
            JobState.FACT_REGISTERED,
            detail="verified on-chain by Integrity",
            fact_tx_hash=None if progress.final_tx is None else hex(progress.final_tx),
            verification_hash=hex(progress.verification_hash),
            security_bits=progress.security_bits,
        )
        _log.info("job.fact_registered", verification_hash=hex(progress.verification_hash))
        faults.crash_point("fact_registered")
        return job

    async def _await_atlantic_verification(
        self, job: Job, needed: Requirement, registry: int
    ) -> Job:
        """Atlantic's PROOF_VERIFICATION_ON_L2 registers the fact in Integrity itself, some
        time after the proof, with bits Atlantic chose: wait (the job is left untouched,
        so its updated_at is when it was proved) until the registry holds a verification
        the router accepts (its pin, enough bits), up to the Atlantic deadline. Another
        verification of the fact (another layout, too few bits) does not count."""
        listed = await self._chain.fact_verifications(registry, needed.fact_hash)
        chosen = pick_listed(needed, listed)
        if chosen is not None:
            found = await self._chain.get_verification(registry, chosen.verification_hash)
            if accepts(needed, found):
                return self._jobs.advance(
                    job,
                    JobState.FACT_REGISTERED,
                    detail="verified on-chain by Atlantic",
                    verification_hash=hex(chosen.verification_hash),
                    security_bits=chosen.security_bits,
                )
        fact = needed.fact_hash
        waited = (self._clock() - datetime.fromisoformat(job.updated_at)).total_seconds()
        if waited < self._fact_wait_s:
            _log.info(
                "job.waiting_for_fact",
                fact_hash=hex(fact),
                verifier_config=str(needed.config),
                min_security_bits=needed.min_security_bits,
                other_verifications=len(listed),
                waited_s=round(waited),
            )
            return job
        return self._fail(
            job,
            "fact_not_registered",
            f"no verification of fact {fact:#x} under the router's bootloaded pin "
            f"{needed.config} with at least {needed.min_security_bits} security bits appeared "
            f"in the registry within {self._fact_wait_s:.0f} s (prover.atlantic_deadline_s; "
            f"{len(listed)} other verification(s) of the fact do not count); check query "
            f"{job.atlantic_query_id} in Atlantic and that prover.atlantic_layout is the "
            "pinned layout",
        )

    async def _submit(self, job: Job) -> Job:
        state = await self._chain.router_state()
        fact = int(str(job.fact_hash), 16)
        if state.epoch != job.epoch:
            return await self._resolve_moved_epoch(job, fact, state)
        if job.verification_hash is None:
            return self._fail(
                job,
                "no_verification",
                "the job names no verification for the router (registered by an older "
                "keeper): it runs again to name one",
            )
        verification_hash = int(job.verification_hash, 16)
        if await self._waits_for_funds(job, [], verification_hash):
            return self._jobs.require(job.id)
        current = self._jobs.require(job.id)

        async def persist_hash(tx_hash: int) -> None:
            nonlocal current
            current = self._jobs.advance(current, JobState.SUBMITTED, submit_tx_hash=hex(tx_hash))
            faults.crash_point("submitted_before_broadcast")

        tx_hash = await self._chain.submit(
            [self._chain.execute_allocation_call(job.output, verification_hash)],
            purpose="execute_allocation",
            before_send=persist_hash,
        )
        _log.info("job.submitted", tx_hash=hex(tx_hash))
        faults.crash_point("submitted")
        return self._jobs.require(job.id)

    async def _resolve_moved_epoch(self, job: Job, fact: int, state: RouterState) -> Job:
        if await self._chain.is_fact_consumed(fact):
            # Our fact executed: a transaction of ours landed whose receipt we never saw.
            _log.info("job.confirmed_from_chain", router_epoch=state.epoch)
            return self._jobs.advance(
                job, JobState.CONFIRMED, detail="the router consumed our fact (receipt not seen)"
            )
        return self._jobs.supersede(
            job, f"the router moved to epoch {state.epoch} without our fact"
        )

    async def _confirm(self, job: Job) -> Job:
        tx_hash = int(str(job.submit_tx_hash), 16)
        outcome = await self._chain.wait(tx_hash, self._receipt_timeout_s)
        if outcome is None:
            self._jobs.record_attempt_failure(
                job, "receipt_pending", f"no receipt for {tx_hash:#x} yet"
            )
            if not self._step_gave_up(self._jobs.require(job.id)):
                return self._jobs.require(job.id)
            # The transaction never landed (dropped, or broadcast never happened): look at
            # the chain, then either confirm or prepare a new submission.
            fact = int(str(job.fact_hash), 16)
            state = await self._chain.router_state()
            current = self._jobs.require(job.id)
            if state.epoch != job.epoch:
                return await self._resolve_moved_epoch(current, fact, state)
            return self._jobs.advance(
                current,
                JobState.FACT_REGISTERED,
                detail=f"transaction {tx_hash:#x} never landed; submitting again",
            )
        self.record_fee(job, "execution", outcome)
        if not outcome.succeeded:
            return self._after_revert(job, outcome.revert_reason or "reverted", sent=True)
        job = self._jobs.advance(job, JobState.CONFIRMED, detail=f"block {outcome.block_number}")
        _log.info(
            "job.confirmed",
            tx_hash=hex(tx_hash),
            block=outcome.block_number,
            fee=str(outcome.actual_fee_amount),
            unit=outcome.actual_fee_unit,
        )
        faults.crash_point("confirmed")
        return job

    async def _waits_for_funds(
        self, job: Job, registration: list[Any], verification_hash: int
    ) -> bool:
        """The funds gate before a job's next transaction (keeper.engine.funds_guard):
        True when the balance does not pay for all its remaining ones (it waits)."""
        if self.funds is None:
            return False
        return await self.funds.hold(job, registration, verification_hash) is not None

    async def _record_unseen_registration_fee(self, job: Job) -> None:
        """The dev registration sent by an earlier attempt whose receipt was never seen
        (node outage, crash): the fact is registered, so it landed; its fee goes into the
        ledger once. (Integrity's transactions are the registrar's: it records each.)"""
        current = self._jobs.require(job.id)
        if current.prover != "dev" or current.fact_tx_hash is None:
            return
        tx_hash = int(current.fact_tx_hash, 16)
        if self._ledger.has_transaction(tx_hash):
            return
        outcome = await self._chain.wait(tx_hash, self._receipt_timeout_s)
        if outcome is not None:
            self.record_fee(current, "fact_registration", outcome)

    def record_fee(
        self, job: Job, kind: Literal["fact_registration", "execution"], outcome: TxOutcome
    ) -> None:
        """One ledger row (and the fee metric) for a transaction of ``job`` that landed."""
        self._ledger.record(None, fee_entry(job, kind, outcome))
        if self._metrics is not None:
            self._metrics.fee_paid(kind, outcome.actual_fee_amount, outcome.actual_fee_unit)


def fee_entry(
    job: Job, kind: Literal["fact_registration", "execution"], outcome: TxOutcome
) -> CostEntry:
    """The ledger row of a transaction of ``job`` that landed (a revert pays its fee too)."""
    return CostEntry(
        job_id=job.id,
        kind=kind,
        prover=job.prover,
        outcome="ok" if outcome.succeeded else "failed",
        reason=outcome.revert_reason,
        fee_amount=outcome.actual_fee_amount,
        fee_unit=outcome.actual_fee_unit,
        tx_hash=outcome.tx_hash,
    )


def _trace_in_thread(inputs: AllocationInputs, trace_dir: Path) -> tuple[Any, float]:
    """Trace, and the CPU seconds of this thread alone (the event loop keeps running)."""
    cpu = time.thread_time()
    result = generate_trace(inputs, trace_dir)
    return result, time.thread_time() - cpu
