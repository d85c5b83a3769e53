"""The job worker's waiting rules, on a real store with a fake chain (no devnet needed):
an Atlantic job waits for its on-chain fact up to the deadline, never burning attempts;
failed steps back off before the next try."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.client import RouterState, Verification, VerifierConfig
from keeper.chain.governance import GovernanceParams
from keeper.engine.daemon import retry_delay
from keeper.engine.worker import JobWorker, ProgramIdentity
from keeper.store.db import open_store
from keeper.store.jobs import Job, JobState, JobStore
from keeper.store.ledger import Ledger

ROUTER, FACT, REGISTRY = 0xABC, 0xFAC7, 0x4E6
GOVERNANCE = GovernanceParams(3600, 500, 5000, 2, 96, REGISTRY, 0x1, 0x2, 0x3)
CONFIG = VerifierConfig("small", "keccak_160_lsb", "stone6", "strict")


class FakeChain:
    """The two reads the fact step makes; the registry's content is set by the test."""

    def __init__(self) -> None:
        self.verifications: list[Verification] = []

    async def router_state(self) -> RouterState:
        return RouterState(1, (), GOVERNANCE, 0, 10)

    async def fact_verifications(self, registry: int, fact: int) -> list[Verification]:
        assert (registry, fact) == (REGISTRY, FACT)
        return list(self.verifications)


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
    chain.verifications = [Verification(0x1, 96, CONFIG)]
    after = await worker.step(jobs.require(job.id))
    assert after.state == JobState.FACT_REGISTERED


async def test_atlantic_fact_that_never_appears_fails_after_the_deadline(jobs: JobStore) -> None:
    clock, chain = Clock(), FakeChain()
    chain.verifications = [Verification(0x1, 80, CONFIG)]  # too weak: does not count
    job = _proved_atlantic_job(jobs)
    clock.now = datetime.fromisoformat(job.updated_at) + timedelta(seconds=601)
    after = await _worker(jobs, chain, clock).step(job)
    assert after.state == JobState.FAILED
    assert after.failure_code == "fact_not_registered"
    assert after.failure_reason is not None and "q-1" in after.failure_reason


@given(st.integers(min_value=1, max_value=64), st.floats(min_value=0.01, max_value=30))
def test_retry_delay_doubles_and_is_capped(attempts: int, poll: float) -> None:
    delay = retry_delay(attempts, poll)
    assert 0 < delay <= 60
    assert delay == min(60, poll * 2 ** (attempts - 1))
    assert retry_delay(attempts + 1, poll) >= delay


async def test_the_loop_rides_out_a_node_outage_until_the_stall_deadline() -> None:
    from keeper.chain.client import ChainUnreachableError
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
