"""A registration the funds ran out in the middle of (issue 21), against Integrity's real
verifier on devnet, through the keeper's IntegrityGuard: the keeper's account is drained
after two of the six split transactions landed (a fee spike, simulated); the registrar
then sends nothing, the job waits with ``insufficient_funds``; once the account is funded
it resumes at the next step, and no step is paid for twice. With the monolith, the gate
estimates the one transaction that will be sent."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from starknet_py.hash.selector import get_selector_from_name

from keeper.chain import ChainClient
from keeper.core.config import FundsConfig
from keeper.engine.funds import FRI_PER_STRK, INSUFFICIENT_FUNDS
from keeper.engine.funds_guard import FundsGuard
from keeper.engine.registrar import IntegrityRegistrar, Pending, Registered
from keeper.ops.health import HealthState
from keeper.ops.metrics import KeeperMetrics
from keeper.store.jobs import Job, JobStore
from keeper.store.ledger import Ledger
from keeper.store.registrations import RegistrationLog
from tests.integrity.conftest import FIBONACCI, KEEPER, OWNER, PIN, IntegrityChain, proved_job
from tests.integrity.registrar_driver import build
from tests.support.funds import balance_at, drain, mint

pytestmark = pytest.mark.devnet
_salts = itertools.count(900)
STEPS = 6  # the Fibonacci proof: initial, 4 steps, final


async def test_a_registration_drained_between_steps_resumes_at_the_next_step_once_funded(
    integrity: IntegrityChain, tmp_path: Path
) -> None:
    registry = await integrity.fresh_guard(next(_salts))  # the keeper sends through its guard
    store_path = tmp_path / "k.sqlite3"
    chain: ChainClient = integrity.client(KEEPER)
    registrar, jobs = build(
        store_path, chain, max_felts=5000, receipt_timeout_s=60, flow="split"
    )
    ledger = Ledger(jobs._store)
    health, metrics = HealthState(), KeeperMetrics()
    guard = FundsGuard(
        chain=chain,
        jobs=jobs,
        ledger=ledger,
        # The registrar's test chain has no router: the execution is costed at this.
        config=FundsConfig(default_cost_per_allocation_fri=10**15),
        margin=1.5,
        metrics=metrics,
        health=health,
    )
    keeper = integrity.devnet.accounts[KEEPER]
    seen: list[int] = []  # how many calls remained at each gate
    drained: list[int] = []

    async def gate(job: Job, remaining: list[Any], verification_hash: int) -> str | None:
        seen.append(len(remaining))
        if len(remaining) == STEPS - 2 and not drained:  # two steps landed: the fee spike
            drained.append(
                await drain(
                    integrity.devnet, integrity.account(KEEPER),
                    to=integrity.devnet.accounts[OWNER].address, keep_fri=1000,
                )
            )
        return await guard.hold(job, remaining, verification_hash)

    registrar.funds_gate = gate
    job = proved_job(jobs, FIBONACCI)
    try:
        progress = await registrar.register(job, registry=registry, pin=PIN, min_security_bits=60)
        assert isinstance(progress, Pending) and progress.code == INSUFFICIENT_FUNDS
        assert seen == [STEPS, STEPS - 1, STEPS - 2]
        log = RegistrationLog(jobs._store)
        assert [(r.step, r.status) for r in log.for_job(job.id)] == [
            (0, "succeeded"), (1, "succeeded")
        ]
        waiting = jobs.require(job.id)
        assert waiting.state.value == "proved" and waiting.failure_code == INSUFFICIENT_FUNDS
        # Four split transactions and the execution.
        assert "5 remaining transaction(s)" in str(waiting.failure_reason)
        assert health.funds_waiting == waiting.failure_reason
        nonce = await integrity.account(KEEPER).get_nonce()
        for _ in range(3):  # looking again sends nothing while the balance is short
            again = await registrar.register(
                jobs.require(job.id), registry=registry, pin=PIN, min_security_bits=60
            )
            assert isinstance(again, Pending) and again.code == INSUFFICIENT_FUNDS
        assert await integrity.account(KEEPER).get_nonce() == nonce
        assert len(log.for_job(job.id)) == 2

        mint(integrity.devnet, keeper.address, 1000 * FRI_PER_STRK)
        await register_until_done(registrar, jobs, job, registry)
    finally:
        # The session's devnet is shared: leave the keeper's account funded.
        if await balance_at(integrity.devnet.url, keeper.address) < 100 * FRI_PER_STRK:
            mint(integrity.devnet, keeper.address, 1000 * FRI_PER_STRK)
    rows = RegistrationLog(jobs._store).for_job(job.id)
    assert [(r.step, r.status) for r in rows] == [(s, "succeeded") for s in range(STEPS)]
    fees = jobs._store.query("SELECT kind, outcome FROM costs WHERE job_id = ?", (job.id,))
    assert [(f["kind"], f["outcome"]) for f in fees] == [("fact_registration", "ok")] * STEPS
    resumed = jobs.require(job.id)
    assert resumed.failure_code is None and health.funds_waiting is None
    assert seen[3:6] == [STEPS - 2] * 3  # waiting: the same next step each time
    assert seen[6:] == [STEPS - 2, STEPS - 3, STEPS - 4, STEPS - 5]  # resumed there


async def test_the_funds_gate_estimates_the_monolith_that_will_be_sent(
    integrity: IntegrityChain, tmp_path: Path
) -> None:
    registry = await integrity.fresh_guard(next(_salts))
    store_path = tmp_path / "k.sqlite3"
    chain: ChainClient = integrity.client(KEEPER)
    registrar, jobs = build(store_path, chain, max_felts=5000, receipt_timeout_s=60)
    guard = FundsGuard(
        chain=chain,
        jobs=jobs,
        ledger=Ledger(jobs._store),
        config=FundsConfig(default_cost_per_allocation_fri=10**15),
        margin=1.5,
    )
    keeper = integrity.devnet.accounts[KEEPER]
    seen: list[list[Any]] = []

    async def gate(job: Job, remaining: list[Any], verification_hash: int) -> str | None:
        seen.append(remaining)
        return await guard.hold(job, remaining, verification_hash)

    registrar.funds_gate = gate
    job = proved_job(jobs, FIBONACCI)
    log = RegistrationLog(jobs._store)
    try:
        await drain(
            integrity.devnet, integrity.account(KEEPER),
            to=integrity.devnet.accounts[OWNER].address, keep_fri=1000,
        )
        nonce = await integrity.account(KEEPER).get_nonce()
        held = await registrar.register(job, registry=registry, pin=PIN, min_security_bits=60)
        assert isinstance(held, Pending) and held.code == INSUFFICIENT_FUNDS
        # What will be sent: one verify_proof_full transaction, then the execution.
        (remaining,) = seen
        assert len(remaining) == 1
        assert remaining[0].to_addr == registry
        assert remaining[0].selector == get_selector_from_name("verify_proof_full")
        assert "2 remaining transaction(s)" in str(jobs.require(job.id).failure_reason)
        assert await integrity.account(KEEPER).get_nonce() == nonce
        assert log.for_job(job.id) == []

        mint(integrity.devnet, keeper.address, 1000 * FRI_PER_STRK)
        await register_until_done(registrar, jobs, job, registry)
    finally:
        if await balance_at(integrity.devnet.url, keeper.address) < 100 * FRI_PER_STRK:
            mint(integrity.devnet, keeper.address, 1000 * FRI_PER_STRK)
    rows = log.for_job(job.id)
    assert [(r.function, r.status) for r in rows] == [("verify_proof_full", "succeeded")]
    fees = jobs._store.query("SELECT kind, outcome FROM costs WHERE job_id = ?", (job.id,))
    assert [(f["kind"], f["outcome"]) for f in fees] == [("fact_registration", "ok")]
    assert jobs.require(job.id).failure_code is None


async def register_until_done(
    registrar: IntegrityRegistrar, jobs: JobStore, job: Job, registry: int
) -> None:
    """The funded account's registration, step by step, until registered (bounded)."""
    done = None
    for _ in range(20):
        done = await registrar.register(
            jobs.require(job.id), registry=registry, pin=PIN, min_security_bits=60
        )
        if isinstance(done, Registered):
            return
        await asyncio.sleep(0.2)  # a receipt not there yet: poll again, bounded
    raise AssertionError(f"not registered after 20 steps: {done}")
