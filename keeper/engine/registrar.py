"""Getting a Stone proof verified by Integrity's CairoVerifier through our IntegrityGuard
(the router's fact registry), crash-safe and never paid twice.

The guard (contracts/src/integrity_guard.cairo) drives the verifier it pins and records
the verification from the verifier's own final report, only under its pinned settings;
Integrity's public FactRegistry is not used: its labels can be forged (issue 18).

A proof is verified in one of two flows (``prover.integrity.choose_flow``):

- *monolith*: one ``verify_proof_full`` transaction carrying the whole proof, when that
  transaction (calldata and the account's ``__execute__`` framing) fits the network's
  calldata limit and ``chain.integrity_flow`` is ``auto`` (the default). ~10 M L2 gas less
  than the split and one receipt instead of four or more;
- *split*: otherwise (or with ``integrity_flow = "split"``), a sequence of guard
  transactions: ``verify_proof_initial``, ``verify_proof_step`` (once per inner FRI
  layer), then ``verify_proof_final``, all under one *Integrity job id*, which the guard
  passes to the verifier unchanged (``prover.integrity.jobs`` has the on-chain rules,
  ``prover.integrity.guard`` the calldata). A split whose initial landed is finished as a
  split, whatever the setting says now.

The transactions are sent in order, one at a time:

- the Integrity job id is random and persisted on the job before the first transaction
  (the monolith's row is filed under it too, though the verifier does not use it);
- every transaction gets a row in ``fact_registrations`` before it is signed, and its
  hash before it is broadcast; its receipt decides the row (succeeded / reverted) and
  its fee goes to the ledger under the job;
- what to send next is read from the chain, not from memory: a transaction whose
  receipt is unknown is resolved first (for the monolith: if it landed, the guard holds
  the verification and nothing more is sent; if it is known not to have landed, it is
  sent again), the guard's verifications are read before every send, the
  CairoVerifier's stored state hashes say which split call is next
  (``SplitPlan.next_call``), and every send is simulated (fee estimate) before it is
  signed, so a step that already landed is never paid for again (a monolith re-sent
  after it landed would *not* revert: the guard records idempotently; that is why the
  verification is read, and the receipt resolved, first);
- before each transaction the funds gate (``funds_gate``) estimates what is still to be
  sent, the monolith or the split calls left, then the execution;
- where the on-chain job cannot be resumed (the id is taken by another proof, or squatted
  before our initial landed) the registrar starts a new Integrity job cleanly;
- nothing is sent when the guard already holds the verification (this fact, the pinned
  configuration, these bits): the job points the router at it.

Before the first transaction the proof is checked against what the router will accept:
the verifier configuration it will be registered under must be the router's pin for
direct proofs, its security bits at least the router's minimum, its fact the job's, and
every transaction within the network's calldata limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from keeper.chain import ChainClient, TxOutcome, VerifierConfig, WouldRevertError
from keeper.chain.integrity import verifier_preset
from keeper.core import faults
from keeper.core.errors import KeeperError
from keeper.core.logs import get_logger
from keeper.engine.funds import INSUFFICIENT_FUNDS
from keeper.store.jobs import Job, JobStore
from keeper.store.registrations import RegistrationLog, RegistrationTx
from prover import facts
from prover.integrity import (
    INTEGRITY_FLOWS,
    Call,
    Flow,
    IntegrityFlow,
    JobStateMismatch,
    SplitPlan,
    StarkProof,
    check_transaction_sizes,
    choose_flow,
    fact_of,
    guard_full_call,
    guard_split_plan,
    new_job_id,
    parse_proof,
    security_bits,
    stored_option,
    verifier_config,
    verifier_storage_address,
)
from prover.integrity.guard import VERIFIER_FULL

_log = get_logger("keeper.engine.registrar")
_MAX_RESTARTS = 3

# Fee-estimate reverts meaning "this Integrity job id cannot be used by us".
_ID_TAKEN = ("job_id already exists",)
# ... and meaning "the on-chain state moved past what we tried to send" (re-read it).
# (Through the guard, a final on a job the verifier no longer holds fails in the verifier's
# own ``unwrap`` of the stored state.)
_STATE_MOVED = (
    "Invalid state",
    "No state (constant) saved",
    "Job id not found",
    "Option::unwrap failed",
)


class RegistrationError(KeeperError):
    """The proof cannot be registered as the router requires; nothing was sent for it."""

    code = "registration_refused"


@dataclass(frozen=True)
class Registered:
    verification_hash: int
    security_bits: int
    final_tx: int | None  # None: the verification was already there


@dataclass(frozen=True)
class Pending:
    reason: str
    code: str = "pending"  # INSUFFICIENT_FUNDS: the funds gate holds the next step


Progress = Registered | Pending
FeeRecorder = Callable[[Job, TxOutcome], None]
# (job, the calls still to send in order, the verification to execute with) -> None to
# go on, else why the job waits (keeper.engine.funds_guard.FundsGuard.hold).
FundsGate = Callable[[Job, list[Any], int], Awaitable[str | None]]


@dataclass(frozen=True)
class _Prepared:
    proof: StarkProof
    fact: int
    bits: int
    config: VerifierConfig
    verification_hash: int
    full_call: Call  # the guard's verify_proof_full: the monolith flow's one transaction


class IntegrityRegistrar:
    def __init__(
        self,
        *,
        chain: ChainClient,
        jobs: JobStore,
        log: RegistrationLog,
        record_fee: FeeRecorder,
        max_calldata_felts: int,
        receipt_timeout_s: float,
        flow: IntegrityFlow = "auto",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if flow not in INTEGRITY_FLOWS:
            raise ValueError(f"integrity flow {flow!r} is not one of {INTEGRITY_FLOWS}")
        self._flow_setting: IntegrityFlow = flow
        self._chain = chain
        self._jobs = jobs
        self._log = log
        self._record_fee = record_fee
        self._max_felts = max_calldata_felts
        self._receipt_timeout_s = receipt_timeout_s
        self._clock = clock
        self._proofs: dict[str, _Prepared] = {}  # proof path -> parsed (0.3-1.5 s each)
        self._plans: dict[tuple[str, int], SplitPlan] = {}
        self._verifiers: dict[tuple[int, str, str], int] = {}
        self._flows: dict[tuple[str, int], Flow] = {}  # (job, Integrity job id) -> logged flow
        # Set by the daemon: before each transaction, the balance must pay for the rest.
        self.funds_gate: FundsGate | None = None

    async def register(
        self, job: Job, *, registry: int, pin: VerifierConfig, min_security_bits: int
    ) -> Progress:
        """Advance the registration of ``job``'s fact as far as it goes now."""
        prepared = await self._prepare(job, pin=pin, min_security_bits=min_security_bits)
        # A transaction sent before a crash is settled first, even when the verification
        # is there (it is what registered it): its row and its fee are recorded once.
        earlier = self._in_flight(job)
        unresolved = await self.settle_in_flight(job)
        if unresolved is not None:
            return unresolved
        if await self._is_registered(registry, prepared.verification_hash):
            final = None
            if earlier is not None:
                final = self._last_succeeded(job, int(earlier.integrity_job_id, 16))
            return Registered(prepared.verification_hash, prepared.bits, final)
        restarts = 0
        while restarts <= _MAX_RESTARTS:
            job = self._jobs.require(job.id)
            integrity_id = self._integrity_id(job)
            if self._flow(job, prepared, integrity_id) == "monolith":
                step = await self._monolith(job, registry, prepared, integrity_id)
            else:
                step = await self._split_step(job, registry, pin, prepared, integrity_id)
            if isinstance(step, Pending):
                return step
            if step == "restart":
                restarts += 1  # a new Integrity job id, or the chain was ahead of us
            # What that step left: its receipt, then whether the guard now holds it.
            unresolved = await self._resolve_in_flight(job, integrity_id)
            if unresolved is not None:
                return unresolved
            if await self._is_registered(registry, prepared.verification_hash):
                final = self._last_succeeded(job, integrity_id)
                return Registered(prepared.verification_hash, prepared.bits, final)
        return Pending(
            f"the Integrity job made no progress after {_MAX_RESTARTS} fresh reads of the "
            "chain; trying again at the next step"
        )

    async def settle_in_flight(self, job: Job) -> Pending | None:
        """Resolve ``job``'s registration transaction whose receipt is not known yet (sent
        before a crash or a receipt timeout): its row gets its outcome and its fee goes to
        the ledger, once. Pending while its receipt may still come; raises
        ``RegistrationRevertedError`` when it reverted. For a caller that finds the
        verification registered without calling ``register``: the transaction that
        registered it may be this one, and its fee must not be lost."""
        job = self._jobs.require(job.id)
        if job.integrity_job_id is None:
            return None
        return await self._resolve_in_flight(job, int(job.integrity_job_id, 16))

    def _in_flight(self, job: Job) -> RegistrationTx | None:
        current = self._jobs.require(job.id)
        if current.integrity_job_id is None:
            return None
        return self._log.in_flight(current.id, int(current.integrity_job_id, 16))

    async def _monolith(
        self, job: Job, registry: int, prepared: _Prepared, integrity_id: int
    ) -> Pending | Literal["sent", "restart"]:
        call = prepared.full_call
        held = await self._gate(job, registry, [call], prepared.verification_hash)
        if held is not None:
            return held
        return await self._send(job, registry, integrity_id, 0, call, prepared.fact)

    async def _split_step(
        self, job: Job, registry: int, pin: VerifierConfig, prepared: _Prepared,
        integrity_id: int,
    ) -> Pending | Literal["sent", "restart"]:
        verifier = await self._verifier(registry, pin)
        plan = await self._plan(job, prepared, integrity_id)
        index = await self._next_index(job, plan, verifier)
        if index is None:
            return "restart"  # a new Integrity job id was taken
        held = await self._gate(
            job, registry, list(plan.calls[index:]), prepared.verification_hash
        )
        if held is not None:
            return held
        return await self._send(job, registry, plan.job_id, index, plan.calls[index], prepared.fact)

    async def _gate(
        self, job: Job, registry: int, calls: list[Call], verification_hash: int
    ) -> Pending | None:
        """The funds gate on what is still to send (one transaction per call)."""
        if self.funds_gate is None:
            return None
        remaining = [_chain_call(registry, call) for call in calls]
        held = await self.funds_gate(job, remaining, verification_hash)
        return None if held is None else Pending(held, INSUFFICIENT_FUNDS)  # resumes here

    def _flow(self, job: Job, prepared: _Prepared, integrity_id: int) -> Flow:
        """The monolith when it fits one transaction and the setting allows it, unless a
        split of this Integrity job already has a step landed (finishing it costs less than
        a whole monolith, and leaves no verifier job open)."""
        chosen = choose_flow(prepared.full_call, self._max_felts, self._flow_setting)
        if chosen == "monolith" and self._split_started(job, integrity_id):
            chosen = "split"
        key = (job.id, integrity_id)
        if self._flows.get(key) != chosen:
            self._flows[key] = chosen
            _log.info(
                "registrar.flow", flow=chosen, setting=self._flow_setting,
                monolith_felts=prepared.full_call.transaction_felts, limit=self._max_felts,
            )
        return chosen

    def _split_started(self, job: Job, integrity_id: int) -> bool:
        return any(
            r.integrity_job_id == hex(integrity_id) and r.status == "succeeded"
            and r.function != VERIFIER_FULL
            for r in self._log.for_job(job.id)
        )

    # ------------------------------------------------------------------ preparation

    async def _prepare(self, job: Job, *, pin: VerifierConfig, min_security_bits: int) -> _Prepared:
        if job.proof_path is None:
            raise RegistrationError(f"job {job.id} has no proof file to register")
        cached = self._proofs.get(job.proof_path)
        if cached is None:
            cached = await asyncio.to_thread(_prepare_proof, Path(job.proof_path))
            self._proofs[job.proof_path] = cached
        expected_fact = int(str(job.fact_hash), 16)
        if cached.fact != expected_fact:
            raise RegistrationError(
                f"the proof at {job.proof_path} registers fact {cached.fact:#x}, not the job's "
                f"{expected_fact:#x}: the proof is of another output; prove the job again"
            )
        if cached.config != pin:
            raise RegistrationError(
                f"the proof would be registered under {_shown(cached.config)} but the router "
                f"accepts {_shown(pin)} for direct proofs: set prover.parameter_set (and the "
                "Stone build) to match the router's pin, or ask governance to pin this one"
            )
        if cached.bits < min_security_bits:
            raise RegistrationError(
                f"the proof has {cached.bits} security bits; the router requires "
                f"{min_security_bits}: prove again (the keeper proves for the router's minimum)"
            )
        return cached

    def _integrity_id(self, job: Job) -> int:
        if job.integrity_job_id is not None:
            return int(job.integrity_job_id, 16)
        fresh = new_job_id()
        self._jobs.set_columns(job, integrity_job_id=hex(fresh))  # before any transaction
        return fresh

    def _new_integrity_id(self, job: Job, why: str) -> None:
        fresh = new_job_id()
        _log.warning(
            "registrar.new_integrity_job", old=job.integrity_job_id, new=hex(fresh), reason=why
        )
        self._jobs.set_columns(self._jobs.require(job.id), integrity_job_id=hex(fresh))

    async def _plan(self, job: Job, prepared: _Prepared, integrity_id: int) -> SplitPlan:
        key = (str(job.proof_path), integrity_id)
        plan = self._plans.get(key)
        if plan is None:
            plan = await asyncio.to_thread(guard_split_plan, prepared.proof, integrity_id)
            # Before the first transaction of this plan: one that is too large for the
            # network would leave an Integrity job open for good.
            check_transaction_sizes(plan.calls, self._max_felts)
            self._plans[key] = plan
        return plan

    # ------------------------------------------------------------------ chain reads

    async def _is_registered(self, registry: int, verification_hash: int) -> bool:
        return await self._chain.get_verification(registry, verification_hash) is not None

    async def _verifier(self, registry: int, pin: VerifierConfig) -> int:
        key = (registry, pin.layout, pin.hasher)
        if key not in self._verifiers:
            preset = verifier_preset(pin.layout, pin.hasher)
            (address,) = await self._chain.call_view(registry, "get_verifier_address", preset)
            self._verifiers[key] = int(address)
        return self._verifiers[key]

    async def _next_index(self, job: Job, plan: SplitPlan, verifier: int) -> int | None:
        """The next call per the verifier's storage; None when a new job id was taken."""
        constant = await self._stored(verifier, "state_constant", plan.job_id)
        variable = await self._stored(verifier, "state_variable", plan.job_id)
        try:
            index = plan.next_call(constant, variable)
        except JobStateMismatch as exc:
            self._new_integrity_id(job, str(exc))
            return None
        return 0 if index is None else index

    async def _stored(self, verifier: int, entry: Any, job_id: int) -> int | None:
        address = verifier_storage_address(entry, job_id)
        variant = await self._chain.storage_at(verifier, address)
        value = await self._chain.storage_at(verifier, address + 1)
        return stored_option(variant, value)

    # ------------------------------------------------------------------ transactions

    async def _resolve_in_flight(self, job: Job, integrity_id: int) -> Pending | None:
        """Settle the transaction sent before (a crash, or a receipt that came late)."""
        row = self._log.in_flight(job.id, integrity_id)
        if row is None:
            return None
        if row.tx_hash is None:
            # Crashed between the row and the broadcast: nothing was sent under it.
            self._log.finish(row.id, "dropped", "never broadcast (the keeper stopped first)")
            return None
        outcome = await self._chain.receipt(int(row.tx_hash, 16))
        if outcome is not None:
            self._settle(job, row, outcome)
            return None
        age = (self._clock() - datetime.fromisoformat(row.at)).total_seconds()
        if age < 3 * self._receipt_timeout_s:
            return Pending(f"waiting for the receipt of {row.function} {row.tx_hash}")
        self._log.finish(row.id, "dropped", f"no receipt after {age:.0f} s")
        return None

    def _settle(self, job: Job, row: RegistrationTx, outcome: TxOutcome) -> None:
        self._record_fee(job, outcome)
        if outcome.succeeded:
            self._log.finish(row.id, "succeeded")
            _log.info("registrar.step_done", function=row.function, step=row.step,
                      tx_hash=row.tx_hash, fee=outcome.actual_fee_amount)
            faults.crash_point("registration_confirmed")
            return
        self._log.finish(row.id, "reverted", outcome.revert_reason)
        raise RegistrationRevertedError(outcome, row)

    async def _send(
        self, job: Job, registry: int, integrity_id: int, step: int, call: Call, fact: int
    ) -> Literal["sent", "restart"]:
        row_id = self._log.begin(
            job.id, fact, integrity_id, step, call.function, call.transaction_felts
        )

        async def persist(tx_hash: int) -> None:
            self._log.sent(row_id, tx_hash)
            faults.crash_point("registration_before_broadcast")

        chain_call = _chain_call(registry, call)
        try:
            tx_hash = await self._chain.submit(
                [chain_call], purpose=call.function, before_send=persist
            )
        except WouldRevertError as exc:
            self._log.finish(row_id, "dropped", f"not sent: would revert: {exc.reason}")
            return self._after_would_revert(job, exc.reason, call.function)
        faults.crash_point("registration_sent")  # broadcast, receipt not read yet
        outcome = await self._chain.wait(tx_hash, self._receipt_timeout_s)
        if outcome is None:
            return "sent"  # resolved at the next pass (or the next step)
        row = next(r for r in self._log.for_job(job.id) if r.id == row_id)
        self._settle(job, row, outcome)
        return "sent"

    def _after_would_revert(self, job: Job, reason: str, function: str) -> Literal["restart"]:
        if function == VERIFIER_FULL:
            raise RegistrationError(
                f"{function} would revert ({reason}); nothing was sent. The proof does not "
                "verify through the router's IntegrityGuard in one transaction as prepared: "
                "check the proof and the guard's pin (it must be the router's direct pin); "
                'chain.integrity_flow = "split" sends it as split transactions instead'
            )
        if any(marker in reason for marker in _ID_TAKEN):
            self._new_integrity_id(job, f"{function} would revert: {reason}")
            return "restart"
        if any(marker in reason for marker in _STATE_MOVED):
            return "restart"  # the chain is ahead of us: re-read its state
        raise RegistrationError(
            f"{function} would revert ({reason}); nothing was sent. The proof does not "
            "verify through the router's IntegrityGuard as prepared: check the proof, the "
            "router's direct pin and the guard's pin (they must be equal)"
        )

    def _last_succeeded(self, job: Job, integrity_id: int) -> int | None:
        done = [
            r for r in self._log.for_job(job.id)
            if r.integrity_job_id == hex(integrity_id) and r.status == "succeeded" and r.tx_hash
        ]
        return int(done[-1].tx_hash or "0", 16) if done else None


class RegistrationRevertedError(KeeperError):
    """An Integrity transaction was included and reverted: its fee is paid."""

    code = "registration_reverted"

    def __init__(self, outcome: TxOutcome, row: RegistrationTx) -> None:
        super().__init__(
            f"{row.function} (Integrity job {row.integrity_job_id}, step {row.step}) reverted "
            f"in transaction {row.tx_hash}: {outcome.revert_reason} (fee paid: "
            f"{outcome.actual_fee_amount} {outcome.actual_fee_unit})"
        )
        self.outcome = outcome


def _prepare_proof(path: Path) -> _Prepared:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistrationError(f"cannot read the proof {path}: {exc}") from exc
    proof = parse_proof(raw)
    config = verifier_config(proof)
    ours = VerifierConfig(config.layout, config.hasher, config.stone_version,
                          config.memory_verification)
    fact, bits = fact_of(proof), security_bits(proof)
    vh = facts.verification_hash(fact, config.config_hash(), bits)
    return _Prepared(proof, fact, bits, ours, vh, guard_full_call(proof, config))


def _chain_call(registry: int, call: Call) -> Any:
    from starknet_py.net.client_models import Call

    return Call(to_addr=registry, selector=call.selector, calldata=list(call.calldata))


def _shown(config: VerifierConfig) -> str:
    return (
        f"({config.layout}, {config.hasher}, {config.stone_version}, "
        f"{config.memory_verification})"
    )


__all__ = [
    "IntegrityRegistrar",
    "Pending",
    "Progress",
    "Registered",
    "RegistrationError",
    "RegistrationRevertedError",
]
