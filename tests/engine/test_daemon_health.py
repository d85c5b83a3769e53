"""What /healthz says about the node (issue 12): the node is silent from the moment any
of the keeper's users of it (the stream's polls, the pipeline's reads, a job step) got
no answer, until each of them has heard from it again. A real Keeper, store and job
worker; the chain is a stand-in that answers or does not."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from keeper.chain import ChainUnreachableError, RouterState, SendUncertainError, TxOutcome
from keeper.core.config import load_config
from keeper.engine.daemon import Keeper
from keeper.engine.worker import JobWorker, ProgramIdentity
from keeper.ops.health import HealthStatus, HealthThresholds, assess
from keeper.store.db import open_store
from keeper.store.jobs import Job, JobState, JobStore
from keeper.store.ledger import Ledger
from tests.support.governance import make_governance

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "keeper.example.toml"
SILENT = "the node has not answered"
ROUTER = 0xABC
EPOCH = 1


def _keeper() -> Keeper:
    return Keeper(load_config(EXAMPLE, {}), environ={}, config_path=None)


def _status(keeper: Keeper) -> tuple[HealthStatus, list[str]]:
    thresholds = HealthThresholds(stall_deadline_s=keeper.cfg.stream.stall_deadline_s)
    return assess(keeper.health, thresholds, time.time())


def _node_silent(keeper: Keeper) -> bool:
    status, reasons = _status(keeper)
    silent = any(r.startswith(SILENT) for r in reasons)
    assert not silent or status == "degraded"  # silence degrades; it is not failing
    return silent


def test_a_failed_stream_poll_is_silence_not_progress_until_a_poll_succeeds() -> None:
    keeper = _keeper()
    keeper.stream_progress("poll")
    assert _status(keeper) == ("ok", [])
    progressed_at = keeper.health.last_stream_progress_at
    keeper.stream_progress("error")
    assert _node_silent(keeper)
    assert keeper.health.last_stream_progress_at == progressed_at  # no progress either
    keeper.stream_progress("poll")
    assert _status(keeper) == ("ok", [])


async def test_the_node_is_silent_until_every_user_of_it_has_heard_from_it() -> None:
    keeper = _keeper()
    keeper.stream_progress("poll")

    async def node_down() -> None:
        raise ChainUnreachableError("starknet_blockNumber: no answer within 30 s")

    async def node_up() -> None:
        return None

    keeper.stream_progress("error")
    first_report = keeper.health.node_unreachable_since
    assert first_report is not None
    keeper._decide = node_down  # type: ignore[method-assign]
    assert await keeper._decide_tolerating_outages() is False
    assert keeper.health.node_unreachable_since == first_report  # silent since the first
    keeper.stream_progress("poll")  # the stream hears from the node; the pipeline has not
    assert _node_silent(keeper)
    keeper._decide = node_up  # type: ignore[method-assign]
    assert await keeper._decide_tolerating_outages() is True
    assert _status(keeper) == ("ok", [])
    assert keeper.health.node_unreachable_since is None


class SilentChain:
    """The calls of the job steps below; ``answers`` says whether the node answers."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers

    async def allocation_inputs(self) -> Any:
        raise ChainUnreachableError("get_inputs: no answer within 30 s")

    async def router_state(self) -> RouterState:
        return RouterState(EPOCH, (), make_governance(), 0, 10)

    def execute_allocation_call(self, output: Sequence[int], verification_hash: int) -> Any:
        return ("execute_allocation", tuple(output), verification_hash)

    async def submit(
        self, calls: Sequence[Any], *, purpose: str, before_send: Callable[[int], Awaitable[None]]
    ) -> int:
        await before_send(0x7)  # the hash is persisted; then the broadcast's answer is lost
        raise SendUncertainError(f"{purpose} transaction 0x7: no answer", tx_hash=0x7)

    async def wait(self, tx_hash: int, timeout_s: float | None = None) -> TxOutcome | None:
        if not self.answers:
            raise AssertionError("ChainClient.wait never raises for a silent node")
        return None  # the node answers: the receipt is not there yet


def _job_in(jobs: JobStore, state: JobState) -> Job:
    job = jobs.create(ROUTER, EPOCH, "request")
    assert job is not None
    if state == JobState.DETECTED:
        return job
    job = jobs.advance(job, JobState.TRACED, output_json='["1"]')
    job = jobs.advance(job, JobState.PROVING)
    job = jobs.advance(job, JobState.PROVED, prover="dev", fact_hash="0x5")
    job = jobs.advance(job, JobState.FACT_REGISTERED, verification_hash="0x6")
    if state == JobState.FACT_REGISTERED:
        return job
    return jobs.advance(job, JobState.SUBMITTED, submit_tx_hash="0x7")


@pytest.mark.parametrize(
    ("state", "answers", "code", "silent"),
    [
        (JobState.DETECTED, False, "rpc_unreachable", True),
        (JobState.FACT_REGISTERED, False, "send_uncertain", True),  # recorded on SUBMITTED
        (JobState.SUBMITTED, True, "receipt_pending", False),  # an answer: "not yet"
    ],
)
async def test_a_job_step_the_node_left_unanswered_makes_the_node_silent(
    tmp_path: Path, state: JobState, answers: bool, code: str, silent: bool
) -> None:
    keeper = _keeper()
    keeper.stream_progress("poll")
    keeper.jobs = JobStore(open_store(tmp_path / "k.sqlite3"))
    keeper.worker = JobWorker(
        jobs=keeper.jobs,
        ledger=Ledger(keeper.jobs._store),
        chain=SilentChain(answers),  # type: ignore[arg-type]
        dev_prover=None,
        program=ProgramIdentity({}, 0x1, 0x2),
        work_dir=tmp_path / "work",
        dev_security_bits=96,
    )
    _job_in(keeper.jobs, state)
    await keeper._work()
    (after,) = keeper.jobs.open_jobs()
    assert (after.attempts, after.failure_code) == (1, code)  # one failed attempt
    assert _node_silent(keeper) is silent
