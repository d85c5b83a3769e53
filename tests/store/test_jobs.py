"""Job states: legal moves only, one transaction per move, no lost or doubled jobs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.store.db import open_store
from keeper.store.jobs import (
    OFF_CHAIN,
    TERMINAL,
    IllegalTransition,
    JobError,
    JobState,
    JobStore,
    StaleJobState,
    allowed,
    job_id,
)

ROUTER = 0xABC
HAPPY = [
    JobState.TRACED,
    JobState.PROVING,
    JobState.PROVED,
    JobState.FACT_REGISTERED,
    JobState.SUBMITTED,
    JobState.CONFIRMED,
]


@pytest.fixture
def jobs(tmp_path: Path) -> JobStore:
    return JobStore(open_store(tmp_path / "k.sqlite3"))


def test_happy_path_is_logged_move_by_move(jobs: JobStore) -> None:
    job = jobs.create(ROUTER, 7, "request", trigger_event_id=3, trigger_block=10)
    assert job is not None and job.id == "0xabc:7" and job.state == JobState.DETECTED
    job = jobs.advance(job, JobState.TRACED, output_json="[1, 2]", n_steps=4096)
    for state in HAPPY[1:]:
        job = jobs.advance(job, state)
    assert job.state == JobState.CONFIRMED and job.output == [1, 2] and job.n_steps == 4096
    moves = zip(["detected", *[s.value for s in HAPPY[:-1]]], [s.value for s in HAPPY], strict=True)
    assert jobs.transitions(job.id) == [(None, "detected"), *moves]
    assert jobs.open_jobs() == []


def test_one_job_per_epoch(jobs: JobStore) -> None:
    assert jobs.create(ROUTER, 1, "interval") is not None
    assert jobs.create(ROUTER, 1, "request") is None
    failed = jobs.fail(
        jobs.require(job_id(ROUTER, 1)), "infeasible", "max_single too low", retry_after=None
    )
    assert jobs.create(ROUTER, 1, "drift") is None
    assert failed.failure_code == "infeasible"
    assert jobs.create(ROUTER, 2, "drift") is not None
    assert jobs.open_epochs(ROUTER) == frozenset({2})


def test_a_move_from_a_stale_read_is_refused(jobs: JobStore) -> None:
    job = jobs.create(ROUTER, 1, "request")
    assert job is not None
    jobs.advance(job, JobState.TRACED)
    with pytest.raises(StaleJobState):
        jobs.advance(job, JobState.TRACED)
    assert jobs.transitions(job.id)[-1] == ("detected", "traced")
    assert len(jobs.transitions(job.id)) == 2


def test_illegal_moves_are_refused(jobs: JobStore) -> None:
    job = jobs.create(ROUTER, 1, "request")
    assert job is not None
    with pytest.raises(IllegalTransition):
        jobs.advance(job, JobState.SUBMITTED)
    done = jobs.supersede(job, "epoch moved")
    with pytest.raises(IllegalTransition):
        jobs.advance(done, JobState.TRACED)


@given(st.sampled_from(list(JobState)), st.sampled_from(list(JobState)))
def test_transition_table(src: JobState, dst: JobState) -> None:
    ok = allowed(src, dst)
    if src in TERMINAL:
        assert not ok
    elif src == JobState.FAILED:
        assert ok == (dst == JobState.DETECTED)  # only reopened, as the next run
        return
    elif dst in (JobState.FAILED, JobState.SUPERSEDED):
        assert ok
    elif dst == JobState.DETECTED:
        assert not ok
    # Nothing skips ahead past the fact, except a confirmation read from the chain.
    if ok and dst in (JobState.SUBMITTED, JobState.CONFIRMED):
        assert src in (JobState.FACT_REGISTERED, JobState.SUBMITTED)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(list(JobState)), max_size=12))
def test_any_sequence_of_moves_keeps_the_log_consistent(
    tmp_path_factory: pytest.TempPathFactory, moves: list[JobState]
) -> None:
    jobs = JobStore(open_store(tmp_path_factory.mktemp("s") / "k.sqlite3"))
    job = jobs.create(ROUTER, 1, "request")
    assert job is not None
    for dst in moves:
        if allowed(job.state, dst):
            job = jobs.advance(job, dst)
        else:
            with pytest.raises(IllegalTransition):
                jobs.advance(job, dst)
    log = jobs.transitions(job.id)
    assert log[-1][1] == job.state.value
    assert all(a == b for (_, a), (b, _) in itertools.pairwise(log))


def test_attempts_count_per_state_and_reset_on_move(jobs: JobStore) -> None:
    job = jobs.create(ROUTER, 1, "request")
    assert job is not None
    assert jobs.record_attempt_failure(job, "rpc", "timeout") == 1
    first = jobs.require(job.id).failing_since
    assert first is not None
    assert jobs.record_attempt_failure(job, "rpc", "timeout") == 2
    assert jobs.require(job.id).failing_since == first  # when the step began failing
    job = jobs.advance(jobs.require(job.id), JobState.TRACED)
    assert (job.attempts, job.failing_since) == (0, None)


def test_a_forward_move_clears_the_failure_of_an_earlier_attempt(jobs: JobStore) -> None:
    # A failed Stone attempt, then the fallback proves it: `jobs` must not show a failure.
    job = jobs.create(ROUTER, 2, "interval")
    assert job is not None
    for state in HAPPY[:2]:
        job = jobs.advance(job, state)
    jobs.record_attempt_failure(job, "stone_failed", "prover exited 1")
    failing = jobs.require(job.id)
    assert (failing.failure_code, failing.failure_reason) == ("stone_failed", "prover exited 1")
    for state in HAPPY[2:]:
        job = jobs.advance(jobs.require(job.id), state)
        assert (job.failure_code, job.failure_reason) == (None, None), state
        jobs.record_attempt_failure(job, "rpc_unreachable", "node down")
    assert jobs.require(job.id).state == JobState.CONFIRMED


def test_the_move_back_and_failure_moves_keep_their_reason(jobs: JobStore) -> None:
    job = jobs.create(ROUTER, 3, "interval")
    assert job is not None
    for state in HAPPY[:5]:
        job = jobs.advance(job, state)
    jobs.record_attempt_failure(job, "tx_dropped", "never landed")
    back = jobs.advance(jobs.require(job.id), JobState.FACT_REGISTERED)
    assert back.failure_code == "tx_dropped"  # why the submission is prepared again
    failed = jobs.fail(back, "reverted", "stale inputs commitment", retry_after=None)
    assert (failed.failure_code, failed.failure_reason) == ("reverted", "stale inputs commitment")


def test_a_failed_job_is_reopened_as_its_next_run(jobs: JobStore) -> None:
    job = jobs.create(ROUTER, 4, "interval")
    assert job is not None
    job = jobs.advance(job, JobState.TRACED, output_json="[1]")
    later = datetime(2030, 1, 1, tzinfo=UTC)
    failed = jobs.fail(job, "rpc_unreachable", "node down", retry_after=later)
    assert failed.retry_after == later.isoformat(timespec="milliseconds")
    assert not failed.parked and not failed.is_open
    assert jobs.open_epochs(ROUTER) == frozenset()
    again = jobs.reopen(failed, "cool-down over")
    assert (again.state, again.run, again.retry_after, again.failure_code) == (
        JobState.DETECTED, 2, None, None
    )
    assert again.output == [1]  # what the first run made is kept until replaced
    assert jobs.open_epochs(ROUTER) == frozenset({4})
    assert jobs.transitions(job.id)[-2:] == [("traced", "failed"), ("failed", "detected")]
    with pytest.raises(IllegalTransition):
        jobs.reopen(again, "not failed")


def test_paid_failures_add_up_and_parked_needs_the_operator(jobs: JobStore) -> None:
    job = jobs.create(ROUTER, 5, "interval")
    assert job is not None
    now = datetime(2030, 1, 1, tzinfo=UTC)
    failed = jobs.fail(job, "reverted", "stale inputs commitment", retry_after=now, paid=True)
    again = jobs.reopen(failed, "cool-down over")
    parked = jobs.fail(again, "reverted", "stale inputs commitment", retry_after=None, paid=True)
    assert parked.parked and parked.paid_failures == 2
    released = jobs.allow_retry(parked, at=now)
    assert not released.parked and released.paid_failures == 0
    assert released.retry_after == now.isoformat(timespec="milliseconds")
    with pytest.raises(JobError):
        jobs.allow_retry(jobs.reopen(released, "operator"), at=now)


def test_advance_from_failed_is_a_reopen(jobs: JobStore) -> None:
    job = jobs.create(ROUTER, 6, "interval")
    assert job is not None
    failed = jobs.fail(job, "x", "y", retry_after=None)
    assert jobs.advance(failed, JobState.DETECTED).run == 2


def test_reorg_supersedes_only_off_chain_jobs_after_the_fork(jobs: JobStore) -> None:
    early = jobs.create(ROUTER, 1, "request", trigger_block=5)
    late = jobs.create(ROUTER, 2, "request", trigger_block=9)
    sent = jobs.create(ROUTER, 3, "request", trigger_block=9)
    assert early and late and sent
    for state in HAPPY[:5]:
        sent = jobs.advance(sent, state)
    assert sent.state == JobState.SUBMITTED and sent.state not in OFF_CHAIN
    with jobs._store.transaction() as db:
        assert jobs.rollback_after_block(db, 6) == 1
    assert jobs.require(early.id).state == JobState.DETECTED
    assert jobs.require(late.id).state == JobState.SUPERSEDED
    assert jobs.require(late.id).failure_code == "rolled_back"
    assert jobs.require(sent.id).state == JobState.SUBMITTED


def test_create_joins_the_callers_transaction(tmp_path: Path) -> None:
    store = open_store(tmp_path / "k.sqlite3")
    jobs = JobStore(store)
    with pytest.raises(RuntimeError), store.transaction():
        jobs.create(ROUTER, 1, "request")
        raise RuntimeError("consumer failed after creating the job")
    assert jobs.get(job_id(ROUTER, 1)) is None
