"""The job worker's waiting rules, on a real store with a fake chain (no devnet needed):
an Atlantic job waits for its on-chain fact up to the deadline, never burning attempts;
failed steps back off before the next try."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keeper.chain import (
    ReceiptTimeoutError,
    RouterState,
    TxOutcome,
    Verification,
    VerificationListElement,
    VerifierConfig,
)
from keeper.engine.acceptance import verification_hash_of
from keeper.engine.retries import RetryRules
from keeper.engine.worker import JobWorker, ProgramIdentity
from keeper.store.db import open_store
from keeper.store.jobs import Job, JobState, JobStore
from keeper.store.ledger import Ledger
from prover import facts
from tests.support.governance import BOOTLOADED_PIN, DIRECT_PIN, make_governance

ROUTER, REGISTRY = 0xABC, 0x4E6
FACT = facts.bootloaded_fact(0x2, [1])  # the job's output is [1]
GOVERNANCE = make_governance(fact_registry=REGISTRY, program_hash=0x1, child_program_hash=0x2)


def listed(bits: int, config: VerifierConfig = BOOTLOADED_PIN) -> VerificationListElement:
    """A verification of FACT as the registry lists it (its hash is Integrity's)."""
    return VerificationListElement(verification_hash_of(FACT, config, bits), bits, config)


class FakeChain:
    """The reads the fact step makes; the registry's content is set by the test."""

    def __init__(self) -> None:
        self.verifications: list[VerificationListElement] = []

    async def router_state(self) -> RouterState:
        return RouterState(1, (), GOVERNANCE, 0, 10)

    async def fact_verifications(self, registry: int, fact: int) -> list[VerificationListElement]:
        assert (registry, fact) == (REGISTRY, FACT)
        return list(self.verifications)

    async def get_verification(self, registry: int, verification_hash: int) -> Verification | None:
        assert registry == REGISTRY
        for v in self.verifications:
            if v.verification_hash == verification_hash:
                return Verification(FACT, v.security_bits, v.verifier_config)
        return None


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def jobs(tmp_path: Path) -> JobStore:
    return JobStore(open_store(tmp_path / "k.sqlite3"))


def _worker(jobs: JobStore, chain: Any, clock: Clock) -> JobWorker:
    return JobWorker(
        jobs=jobs,
        ledger=Ledger(jobs._store),
        chain=chain,
        dev_prover=None,
        program=ProgramIdentity({}, 0x1, 0x2),
        work_dir=Path("/nonexistent"),
        dev_security_bits=96,
        fact_wait_s=600,
        clock=clock,
    )


def _proved_atlantic_job(jobs: JobStore) -> Job:
    job = jobs.create(ROUTER, 1, "request")
    assert job is not None
    job = jobs.advance(job, JobState.TRACED, output_json='["1"]')
    job = jobs.advance(job, JobState.PROVING)
    return jobs.advance(
        job, JobState.PROVED, prover="atlantic", fact_hash=hex(FACT), atlantic_query_id="q-1"
    )


async def test_atlantic_job_waits_for_its_fact_without_spending_attempts(jobs: JobStore) -> None:
    clock, chain = Clock(), FakeChain()
    worker = _worker(jobs, chain, clock)
    job = _proved_atlantic_job(jobs)
    for minutes in (0, 3, 9):
        clock.now = datetime.fromisoformat(job.updated_at) + timedelta(minutes=minutes)
        after = await worker.step(jobs.require(job.id))
        assert (after.state, after.attempts) == (JobState.PROVED, 0)
    # Verifications the router would refuse do not end the wait: another layout, too few bits.
    chain.verifications = [listed(128, DIRECT_PIN), listed(80)]
    after = await worker.step(jobs.require(job.id))
    assert (after.state, after.attempts) == (JobState.PROVED, 0)
    chain.verifications.append(listed(96))
    after = await worker.step(jobs.require(job.id))
    assert after.state == JobState.FACT_REGISTERED
    assert after.verification_hash == hex(listed(96).verification_hash)
    assert after.security_bits == 96


async def test_atlantic_fact_that_never_appears_fails_after_the_deadline(jobs: JobStore) -> None:
    clock, chain = Clock(), FakeChain()
    chain.verifications = [listed(80)]  # too weak: does not count
    job = _proved_atlantic_job(jobs)
    clock.now = datetime.fromisoformat(job.updated_at) + timedelta(seconds=601)
    after = await _worker(jobs, chain, clock).step(job)
    assert after.state == JobState.FAILED
    assert after.failure_code == "fact_not_registered"
    assert after.failure_reason is not None and "q-1" in after.failure_reason


class DownChain(FakeChain):
    """A node that does not answer."""

    async def router_state(self) -> RouterState:
        from keeper.chain import ChainUnreachableError

        raise ChainUnreachableError("starknet_call: connection refused")


def _registered_job(jobs: JobStore) -> Job:
    job = _proved_atlantic_job(jobs)
    return jobs.advance(job, JobState.FACT_REGISTERED)


async def test_a_failing_step_is_retried_for_the_whole_window_then_the_run_fails(
    tmp_path: Path,
) -> None:
    clock = Clock()
    jobs = JobStore(open_store(tmp_path / "k.sqlite3"), clock=clock)
    worker = JobWorker(
        jobs=jobs,
        ledger=Ledger(jobs._store),
        chain=DownChain(),
        dev_prover=None,
        program=ProgramIdentity({}, 0x1, 0x2),
        work_dir=Path("/nonexistent"),
        dev_security_bits=96,
        retry=RetryRules(step_window_s=300, cooldown_s=60, cooldown_max_s=600),
        clock=clock,
    )
    job = _registered_job(jobs)
    start = clock.now
    for seconds in (0, 10, 100, 299):  # many attempts: a count would have given up
        clock.now = start + timedelta(seconds=seconds)
        after = await worker.step(jobs.require(job.id))
        assert after.state == JobState.FACT_REGISTERED
    clock.now = start + timedelta(seconds=300)
    after = await worker.step(jobs.require(job.id))
    assert (after.state, after.failure_code, after.parked) == (
        JobState.FAILED, "rpc_unreachable", False
    )
    assert after.retry_after == (clock.now + timedelta(seconds=60)).isoformat(
        timespec="milliseconds"
    )
    assert after.paid_failures == 0  # nothing was paid: it never parks for this


async def test_the_loop_rides_out_a_node_outage_until_the_stall_deadline() -> None:
    from keeper.chain import ChainUnreachableError
    from keeper.core.config import load_config
    from keeper.engine.daemon import Keeper

    example = Path(__file__).resolve().parents[2] / "config" / "keeper.example.toml"
    keeper = Keeper(load_config(example, {}), environ={}, config_path=None)
    calls: list[str] = []

    async def node_down() -> None:
        calls.append("down")
        raise ChainUnreachableError("starknet_getBlock: connection refused")

    async def node_up() -> None:
        calls.append("up")

    keeper._decide = node_down  # type: ignore[method-assign]
    assert await keeper._decide_tolerating_outages() is False  # a blip: keep running
    assert await keeper._decide_tolerating_outages() is False
    keeper._decide = node_up  # type: ignore[method-assign]
    assert await keeper._decide_tolerating_outages() is True  # back: the outage is over
    keeper._decide = node_down  # type: ignore[method-assign]
    assert await keeper._decide_tolerating_outages() is False  # a new outage starts now
    assert keeper._node_down_since is not None
    keeper._node_down_since -= keeper.cfg.stream.stall_deadline_s + 1
    with pytest.raises(ChainUnreachableError):
        await keeper._decide_tolerating_outages()
    assert calls == ["down", "down", "up", "down", "down"]


DEV_FACT = facts.direct_fact(0x1, [1])  # the dev job's output [1] under program hash 0x1
DEV_TX = 0x7D1


class FakeDevChain:
    """A registry that holds the dev registration once ``landed`` (the test says when),
    and the receipt of that transaction."""

    def __init__(self) -> None:
        self.landed = False

    async def router_state(self) -> RouterState:
        return RouterState(1, (), GOVERNANCE, 0, 10)

    async def get_verification(self, registry: int, verification_hash: int) -> Verification | None:
        if not self.landed or verification_hash != verification_hash_of(DEV_FACT, DIRECT_PIN, 96):
            return None
        return Verification(DEV_FACT, 96, DIRECT_PIN)

    async def wait(self, tx_hash: int, timeout_s: float | None) -> TxOutcome | None:
        assert tx_hash == DEV_TX
        return TxOutcome(DEV_TX, "succeeded", None, 4_200, "FRI", 12)


class DevProverWhoseReceiptIsLost:
    """Signs and broadcasts the registration (it lands), then loses the receipt."""

    def __init__(self, chain: FakeDevChain) -> None:
        self._chain = chain
        self.sent = 0

    async def register(
        self,
        output: list[int],
        *,
        program_hash: int,
        security_bits: int,
        before_send: Callable[[int], Awaitable[None]] | None = None,
    ) -> Any:
        assert before_send is not None
        await before_send(DEV_TX)
        self.sent += 1
        self._chain.landed = True
        raise ReceiptTimeoutError("no final receipt", tx_hash=DEV_TX)


async def test_a_dev_registration_whose_receipt_was_lost_is_paid_for_once(
    jobs: JobStore,
) -> None:
    chain = FakeDevChain()
    dev = DevProverWhoseReceiptIsLost(chain)
    worker = JobWorker(
        jobs=jobs,
        ledger=Ledger(jobs._store),
        chain=chain,  # type: ignore[arg-type]
        dev_prover=dev,  # type: ignore[arg-type]
        program=ProgramIdentity({}, 0x1, 0x2),
        work_dir=Path("/nonexistent"),
        dev_security_bits=96,
        fact_wait_s=600,
        clock=Clock(),
    )
    job = jobs.create(ROUTER, 1, "request")
    assert job is not None
    job = jobs.advance(job, JobState.TRACED, output_json='["1"]')
    job = jobs.advance(job, JobState.PROVING)
    job = jobs.advance(job, JobState.PROVED, prover="dev", fact_hash=hex(DEV_FACT))

    after = await worker.step(job)
    assert (after.state, after.failure_code, after.fact_tx_hash) == (
        JobState.PROVED,
        "receipt_timeout",
        hex(DEV_TX),
    )
    # The retry finds the fact registered: no second registration, the first one's fee.
    after = await worker.step(jobs.require(job.id))
    assert after.state == JobState.FACT_REGISTERED
    assert dev.sent == 1
    rows = jobs._store.query("SELECT kind, fee_amount, tx_hash FROM costs")
    assert [(r["kind"], r["fee_amount"], r["tx_hash"]) for r in rows] == [
        ("fact_registration", "4200", hex(DEV_TX))
    ]
