"""The worker's Stone path to the router: a proof swiftness refuses never reaches the
chain, and a fact is registered only through Integrity (the registrar), under the
router's direct pin, its verification hash then stored for the execution."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from keeper.chain import RouterState, Verification
from keeper.engine.acceptance import verification_hash_of
from keeper.engine.registrar import Pending, Registered
from keeper.engine.worker import JobWorker, ProgramIdentity, ProofCheck
from keeper.store.db import open_store
from keeper.store.jobs import Job, JobState, JobStore
from keeper.store.ledger import Ledger
from prover import facts
from prover.model import AllocationInputs, load_inputs
from prover.swiftness import SwiftnessProofRejectedError
from tests.support.governance import DIRECT_PIN, make_governance

ROOT = Path(__file__).resolve().parents[2]
REGISTRY, PROGRAM = 0x4E6, 0x1
OUTPUT = [7, 8]
FACT = facts.direct_fact(PROGRAM, OUTPUT)
GOVERNANCE = make_governance(fact_registry=REGISTRY, program_hash=PROGRAM, min_security_bits=96)
WANTED = verification_hash_of(FACT, DIRECT_PIN, 96)


class FakeChain:
    def __init__(self) -> None:
        self.registered: dict[int, Verification] = {}

    async def router_state(self) -> RouterState:
        return RouterState(1, (), GOVERNANCE, 0, 10)

    async def get_verification(self, registry: int, verification_hash: int) -> Verification | None:
        assert registry == REGISTRY
        return self.registered.get(verification_hash)


class FakeRegistrar:
    """Pending once (a receipt is due), then registered with the hash it is told to."""

    def __init__(self, chain: FakeChain, result_hash: int = WANTED) -> None:
        self.chain, self.result_hash, self.calls = chain, result_hash, 0

    async def register(self, job: Job, **kwargs: Any) -> Pending | Registered:
        self.calls += 1
        assert kwargs == {"registry": REGISTRY, "pin": DIRECT_PIN, "min_security_bits": 96}
        if self.calls == 1:
            return Pending("waiting for the receipt of verify_proof_initial 0x1")
        return Registered(self.result_hash, 96, 0xF1A1)


class RefusingCheck:
    async def precheck(self, proof_path: Path, **kwargs: Any) -> Any:
        raise SwiftnessProofRejectedError(
            "swiftness (small-keccak_160_lsb-stone6) rejected the proof: OodsMismatch",
            detail="Error: OodsMismatch",
            exit_status=1,
        )


class FakeProving:
    """A Stone run that produced a proof file (its content is the check's business)."""

    def __init__(self, proof: Path) -> None:
        self.proof = proof

    def phase(self) -> str:
        return "Stone: proving"

    async def prove(self, request: Any, *, policy: Any) -> Any:
        from prover.policy import Cost, ProofOutcome

        return ProofOutcome("stone", self.proof, FACT, 96, 1.0, Cost(basis="test"), ())


def _worker(jobs: JobStore, chain: FakeChain) -> JobWorker:
    return JobWorker(
        jobs=jobs,
        ledger=Ledger(jobs._store),
        chain=chain,  # type: ignore[arg-type]
        dev_prover=None,
        program=ProgramIdentity({}, PROGRAM, 0x2),
        work_dir=Path("/nonexistent"),
        dev_security_bits=96,
    )


@pytest.fixture
def jobs(tmp_path: Path) -> JobStore:
    return JobStore(open_store(tmp_path / "k.sqlite3"))


def _proved(jobs: JobStore) -> Job:
    job = jobs.create(0xABC, 1, "request")
    assert job is not None
    job = jobs.advance(job, JobState.TRACED, output_json='["7", "8"]')
    job = jobs.advance(job, JobState.PROVING)
    return jobs.advance(
        job, JobState.PROVED, prover="stone", proof_path="/p.json", fact_hash=hex(FACT),
        security_bits=96,
    )


async def test_a_stone_fact_goes_through_the_registrar_and_its_verification_is_kept(
    jobs: JobStore,
) -> None:
    chain = FakeChain()
    worker = _worker(jobs, chain)
    worker.registrar = FakeRegistrar(chain)  # type: ignore[assignment]
    job = _proved(jobs)
    waiting = await worker.step(job)
    assert (waiting.state, waiting.attempts) == (JobState.PROVED, 0)  # a receipt is due
    done = await worker.step(waiting)
    assert done.state == JobState.FACT_REGISTERED
    assert (done.verification_hash, done.fact_tx_hash) == (hex(WANTED), hex(0xF1A1))


async def test_a_registration_under_another_verification_fails_the_run(jobs: JobStore) -> None:
    chain = FakeChain()
    worker = _worker(jobs, chain)
    worker.registrar = FakeRegistrar(chain, result_hash=WANTED + 1)  # type: ignore[assignment]
    job = _proved(jobs)
    await worker.step(job)
    after = await worker.step(jobs.require(job.id))
    assert (after.state, after.failure_code) == (JobState.FAILED, "verification_mismatch")


async def test_a_stone_fact_without_a_registrar_fails_with_the_reason(jobs: JobStore) -> None:
    after = await _worker(jobs, FakeChain()).step(_proved(jobs))
    assert (after.state, after.failure_code) == (JobState.FAILED, "no_fact_registrar")
    assert after.failure_reason is not None and "Integrity" in after.failure_reason


async def test_a_proof_swiftness_refuses_fails_before_any_transaction(
    jobs: JobStore, tmp_path: Path
) -> None:
    chain = FakeChain()
    worker = _worker(jobs, chain)
    worker.swiftness = ProofCheck(RefusingCheck(), "stone6")  # type: ignore[arg-type]
    worker.proving = FakeProving(tmp_path / "proof.json")  # type: ignore[assignment]
    worker.accepted = _accepting()
    job = jobs.create(0xABC, 2, "request")
    assert job is not None
    job = jobs.advance(job, JobState.TRACED, output_json='["7", "8"]', trace_dir=str(tmp_path))
    after = await worker.step(job)
    assert (after.state, after.failure_code) == (JobState.FAILED, "proof_rejected")
    assert after.failure_reason is not None
    assert "no transaction was sent" in after.failure_reason
    assert jobs._store.query("SELECT * FROM costs WHERE kind = 'fact_registration'") == []


def _accepting() -> Any:
    from keeper.engine.policy import accepted_provers

    return accepted_provers(
        GOVERNANCE, program_hash=PROGRAM, child_program_hash=0x2, policy="stone_only"
    )


class ChainWithNewInputs(FakeChain):
    """The router's inputs now: another APY than the job traced."""

    def __init__(self, inputs: AllocationInputs) -> None:
        super().__init__()
        self.inputs = inputs

    async def allocation_inputs(self) -> tuple[AllocationInputs, RouterState]:
        return self.inputs, await self.router_state()


async def test_no_registration_is_paid_for_a_proof_of_inputs_that_changed(
    jobs: JobStore,
) -> None:
    traced = load_inputs(ROOT / "config" / "devnet_inputs.json")
    first = traced.protocols[0]
    now = dataclasses.replace(
        traced, protocols=(dataclasses.replace(first, apy_bps=first.apy_bps + 1),
                           *traced.protocols[1:])
    )
    job = _proved(jobs)
    job = jobs.set_columns(job, inputs_json=json.dumps(traced.to_json()))
    chain = ChainWithNewInputs(now)
    worker = _worker(jobs, chain)
    registrar = FakeRegistrar(chain)
    worker.registrar = registrar  # type: ignore[assignment]
    after = await worker.step(job)
    assert (after.state, after.failure_code, registrar.calls) == (
        JobState.FAILED, "stale_output", 0
    )
    assert after.paid_failures == 0 and after.retry_after is not None  # runs again at once
    # The same inputs as traced: the registration goes ahead.
    chain.inputs = traced
    job = _proved_again(jobs, after, traced)
    assert (await worker.step(job)).state == JobState.PROVED and registrar.calls == 1


def _proved_again(jobs: JobStore, failed: Job, inputs: AllocationInputs) -> Job:
    job = jobs.reopen(failed, "test")
    job = jobs.advance(job, JobState.TRACED, output_json='["7", "8"]',
                       inputs_json=json.dumps(inputs.to_json()))
    job = jobs.advance(job, JobState.PROVING)
    return jobs.advance(
        job, JobState.PROVED, prover="stone", proof_path="/p.json", fact_hash=hex(FACT),
        security_bits=96,
    )


class RegistrarWithATransactionInFlight(FakeRegistrar):
    """The guard already holds the verification; our transaction that put it there was
    sent before a crash and its receipt is not read yet (then it is)."""

    def __init__(self, chain: FakeChain) -> None:
        super().__init__(chain)
        self.settled = 0
        self.receipt_due = True

    async def settle_in_flight(self, job: Job) -> Pending | None:
        self.settled += 1
        if self.receipt_due:
            return Pending("waiting for the receipt of verify_proof_full 0x1")
        return None


async def test_a_registration_that_landed_during_a_crash_is_settled_before_the_job_moves(
    jobs: JobStore,
) -> None:
    chain = FakeChain()
    chain.registered[WANTED] = Verification(FACT, 96, DIRECT_PIN)
    worker = _worker(jobs, chain)
    registrar = RegistrarWithATransactionInFlight(chain)
    worker.registrar = registrar  # type: ignore[assignment]
    job = _proved(jobs)
    waiting = await worker.step(job)
    assert (waiting.state, registrar.settled, registrar.calls) == (JobState.PROVED, 1, 0)
    registrar.receipt_due = False  # the receipt came: its fee is in the ledger
    done = await worker.step(waiting)
    assert (done.state, done.verification_hash) == (JobState.FACT_REGISTERED, hex(WANTED))
    assert (registrar.settled, registrar.calls) == (2, 0)  # nothing sent again
