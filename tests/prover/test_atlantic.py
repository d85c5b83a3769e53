"""The Atlantic client against a local Atlantic stand-in with scripted faults."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from structlog.testing import capture_logs

from prover.atlantic import (
    AtlanticBadResponseError,
    AtlanticClient,
    AtlanticDeadlineError,
    AtlanticError,
    AtlanticFactMismatchError,
    AtlanticOutOfCreditError,
    AtlanticQueryFailedError,
    AtlanticQueryLimitError,
    AtlanticQueryRef,
    AtlanticRejectedError,
    AtlanticResult,
    AtlanticUnavailableError,
)
from prover.errors import InputError
from prover.settings import JOB_SIZES, ProverSettings, atlantic_job_size
from tests.support.reference import STONE_SAMPLES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from atlantic_server import FAILURE_REASON, FakeAtlantic, atlantic_fact

SAMPLES = STONE_SAMPLES
OUTPUTS = (3, 5000, 3000, 2000, 5000)
PROGRAM: dict[str, Any] = json.loads((SAMPLES / "weights_compiled.json").read_text())
PROGRAM_INPUT: dict[str, Any] = json.loads((SAMPLES / "input.json").read_text())
ATTEMPTS = 5
N_STEPS = json.loads((SAMPLES / "public_input.json").read_text())["n_steps"]
JOB = "router-1:epoch-7"


class FakeClock:
    """Time that moves only when the client sleeps: no real waiting in tests."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def server() -> Iterator[FakeAtlantic]:
    atlantic_fact(PROGRAM, OUTPUTS)  # warm the stand-in's slow hash cache
    with FakeAtlantic(outputs=OUTPUTS).running() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def settings_for(server: FakeAtlantic, **overrides: Any) -> ProverSettings:
    return ProverSettings(
        atlantic_base_url=server.base_url,
        atlantic_api_key=server.api_key,
        atlantic_request_timeout_s=0.25,
        atlantic_retry_attempts=ATTEMPTS,
        atlantic_retry_budget_s=120.0,
        atlantic_backoff_base_s=0.5,
        atlantic_backoff_max_s=4.0,
        atlantic_poll_interval_s=5.0,
        atlantic_poll_max_interval_s=20.0,
        atlantic_deadline_s=600.0,
    ).model_copy(update=overrides)


class JobRecord:
    """What the keeper persists of a job: the query id ``on_query`` reported."""

    def __init__(self) -> None:
        self.query_id: str | None = None
        self.refs: list[AtlanticQueryRef] = []

    def on_query(self, ref: AtlanticQueryRef) -> None:
        self.refs.append(ref)
        self.query_id = ref.query_id


async def prove(
    server: FakeAtlantic,
    clock: FakeClock,
    out_dir: Path,
    job: str = JOB,
    record: JobRecord | None = None,
    **overrides: Any,
) -> AtlanticResult:
    async with AtlanticClient(
        settings_for(server, **overrides), sleep=clock.sleep, clock=clock
    ) as client:
        return await client.prove(
            program=PROGRAM,
            program_input=PROGRAM_INPUT,
            outputs=OUTPUTS,
            job_key=job,
            n_steps=N_STEPS,
            out_dir=out_dir,
            query_id=None if record is None else record.query_id,
            on_query=None if record is None else record.on_query,
        )


async def test_happy_path(server: FakeAtlantic, clock: FakeClock, tmp_path: Path) -> None:
    result = await prove(server, clock, tmp_path)

    assert result.fact_hash == atlantic_fact(PROGRAM, OUTPUTS)
    assert result.reported_fact_hash == result.fact_hash
    assert result.resumed is False
    assert result.job_size == "S"
    assert result.proof_path == tmp_path / "atlantic_proof.json"
    assert json.loads(result.proof_path.read_text()) == server.proof
    assert (result.dedup_id, result.generation) == ("router-1:epoch-7#0", 0)
    assert server.created == 1
    assert server.duplicate_posts == 0
    assert server.requests[0] == ("lookup", "404")  # looked up before submitting
    query = next(iter(server.queries.values()))
    assert query.form["cairoVersion"] == "cairo0"
    assert query.form["cairoVm"] == "python"
    assert query.form["dedupId"] == "router-1:epoch-7#0"
    assert query.form["declaredJobSize"] == "S"  # 4,096 steps: Atlantic's table says S
    assert query.form["network"] == "TESTNET"
    assert query.form["result"] == "PROOF_VERIFICATION_ON_L2"
    assert query.program == PROGRAM
    assert query.program_input == PROGRAM_INPUT
    assert not server.key_in_query_string
    assert not server.key_sent_to_storage


@pytest.mark.parametrize("fault", ["429", "503"])
async def test_a_refused_submission_is_retried_after_a_lookup(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path, fault: str
) -> None:
    server.retry_after = "0"
    server.script("submit", fault)
    result = await prove(server, clock, tmp_path)
    assert result.fact_hash == atlantic_fact(PROGRAM, OUTPUTS)
    assert (server.created, server.duplicate_posts, server.count("submit")) == (1, 0, 2)
    assert server.count("lookup") == 1  # refused, not accepted: nothing to look for


@pytest.mark.parametrize("fault", ["502", "504", "500html", "html200", "drop"])
async def test_an_unanswered_submission_waits_out_the_settle_window_before_posting_again(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path, fault: str
) -> None:
    # Sent, no usable answer, and Atlantic never made the query: only lookups during the
    # settle window, then one more POST.
    server.script("submit", fault)
    result = await prove(server, clock, tmp_path, atlantic_submit_settle_s=60.0)
    assert result.fact_hash == atlantic_fact(PROGRAM, OUTPUTS)
    assert (server.created, server.duplicate_posts, server.count("submit")) == (1, 0, 2)
    endpoints = [name for name, _ in server.requests]
    first, second = (i for i, name in enumerate(endpoints) if name == "submit")
    assert endpoints[first + 1 : second] == ["lookup"] * (second - first - 1)
    assert second - first - 1 >= 3  # several lookups, the last after the window
    assert sum(clock.sleeps) >= 60.0  # the second POST waited out the window


async def test_a_slow_submission_is_found_by_dedup_id_not_posted_twice(
    server: FakeAtlantic, tmp_path: Path
) -> None:
    # The server takes 2 s to accept while the client gives up after 0.25 s: the dedupId
    # lookup says 404 until the query exists, then finds it; only one POST ever goes out.
    # Real time here (the server's delay is real); the window is far longer than needed.
    server.slow_s = 2.0
    server.script("submit", "slow")
    settings = settings_for(
        server,
        atlantic_submit_settle_s=60.0,
        atlantic_backoff_max_s=0.5,
        atlantic_poll_interval_s=0.1,
    )
    async with AtlanticClient(settings) as client:
        result = await client.prove(
            program=PROGRAM,
            program_input=PROGRAM_INPUT,
            outputs=OUTPUTS,
            job_key=JOB,
            n_steps=N_STEPS,
            out_dir=tmp_path,
        )
    await asyncio.to_thread(server.wait_idle)  # the abandoned POST has been handled too
    assert result.fact_hash == atlantic_fact(PROGRAM, OUTPUTS)
    posts = [outcome for name, outcome in server.requests if name == "submit"]
    assert posts == ["slow", "200"]  # one POST: delayed, then accepted
    assert (server.created, server.duplicate_posts) == (1, 0)
    assert ("lookup", "404") in server.requests[1:]  # it looked while Atlantic was busy
    assert result.resumed is False  # our POST made it


class Interrupted(Exception):
    """The keeper stopping mid-call (shutdown, a cancelled job step)."""


async def test_a_later_call_settles_before_posting_again(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    # A POST goes unanswered and the call is interrupted while it looks the dedupId up:
    # the next call of the same client still waits out that POST's window before its own.
    server.script("submit", "drop")
    settings = settings_for(server, atlantic_submit_settle_s=30.0)
    interrupt = True

    async def sleep(seconds: float) -> None:
        if interrupt:
            raise Interrupted
        await clock.sleep(seconds)

    kwargs: dict[str, Any] = dict(
        program=PROGRAM, program_input=PROGRAM_INPUT, outputs=OUTPUTS, job_key=JOB,
        n_steps=N_STEPS, out_dir=tmp_path,
    )
    async with AtlanticClient(settings, sleep=sleep, clock=clock) as client:
        with pytest.raises(Interrupted):
            await client.prove(**kwargs)
        assert (server.count("submit"), server.created) == (1, 0)
        interrupt = False
        clock.now += 5.0  # the next attempt, 5 s after the unanswered POST
        await client.prove(**kwargs)
    assert (server.count("submit"), server.created, server.duplicate_posts) == (2, 1, 0)
    endpoints = [name for name, _ in server.requests]
    first, second = (i for i, name in enumerate(endpoints) if name == "submit")
    # Between the POSTs: the interrupted call's lookup, the next call's own lookup, then
    # the rest of the window (25 s) in lookups before the second POST.
    assert endpoints[first + 1 : second] == ["lookup"] * (second - first - 1)
    assert second - first - 1 >= 5


async def test_post_accepted_but_reply_lost_is_found_by_dedup_id(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.script("submit", "drop_after_accept")
    await prove(server, clock, tmp_path)
    assert server.count("submit") == 1  # found by dedupId: never POSTed again
    assert server.created == 1


@pytest.mark.parametrize("endpoint", ["lookup", "status", "proof"])
@pytest.mark.parametrize("fault", ["503", "drop", "slow", "500html", "html200"])
async def test_transient_faults_elsewhere_are_retried(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path, endpoint: str, fault: str
) -> None:
    server.script(endpoint, fault, fault)
    result = await prove(server, clock, tmp_path)
    assert result.proof_path is not None
    assert json.loads(result.proof_path.read_text()) == server.proof
    assert server.created == 1


async def test_a_409_on_submit_leads_to_the_existing_query(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    # A racing POST of ours (reply lost, not yet visible to the lookup) holds the dedupId.
    server.script("submit", "accept_then_409")
    result = await prove(server, clock, tmp_path)
    assert server.created == 1
    assert server.count("submit") == 1
    assert result.query_id in server.queries


async def test_429_honours_retry_after(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.retry_after = "3"
    server.script("status", "429")
    await prove(server, clock, tmp_path)
    assert 3.0 in clock.sleeps


async def test_transient_failures_stop_after_the_attempt_budget(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.script("submit", *["503"] * 20)
    with pytest.raises(AtlanticUnavailableError) as info:
        await prove(server, clock, tmp_path)
    assert info.value.code == "atlantic_unavailable"
    assert server.count("submit") == ATTEMPTS
    assert server.created == 0


async def test_transient_failures_stop_after_the_time_budget(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.retry_after = "50"
    server.script("submit", *["429"] * 20)
    with pytest.raises(AtlanticUnavailableError):
        await prove(
            server, clock, tmp_path, atlantic_retry_budget_s=120.0, atlantic_retry_attempts=50
        )
    assert server.count("submit") == 4  # at t=0, 50, 100, 120 (the rest of the budget)
    assert sum(clock.sleeps) <= 120.0


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("400", AtlanticRejectedError),
        ("500json", AtlanticRejectedError),
        ("402", AtlanticOutOfCreditError),
    ],
)
async def test_final_errors_are_not_retried(
    server: FakeAtlantic,
    clock: FakeClock,
    tmp_path: Path,
    fault: str,
    error: type[AtlanticError],
) -> None:
    server.script("submit", fault)
    with pytest.raises(error) as info:
        await prove(server, clock, tmp_path)
    assert server.count("submit") == 1
    assert server.created == 0
    if fault == "402":
        assert "out of Atlantic credit: top up" in str(info.value)
        assert info.value.code == "atlantic_out_of_credit"


async def test_failed_query(server: FakeAtlantic, clock: FakeClock, tmp_path: Path) -> None:
    server.plan = ("IN_PROGRESS", "FAILED")
    with pytest.raises(AtlanticQueryFailedError, match="assert failed") as info:
        await prove(server, clock, tmp_path)
    assert server.created == 1
    failed = server.by_dedup_id(f"{JOB}#0")
    assert info.value.failure.query_id == failed.id
    assert info.value.next_dedup_id == f"{JOB}#1"
    assert f"next attempt submits a new query under dedupId {JOB}#1" in str(info.value)


async def test_stuck_query_hits_the_deadline_and_is_resumed_later(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.plan = ("IN_PROGRESS",)
    with pytest.raises(AtlanticDeadlineError) as info:
        await prove(server, clock, tmp_path, atlantic_deadline_s=120.0)
    assert info.value.code == "atlantic_deadline"
    polls = server.count("status")
    assert 2 <= polls <= 10
    assert sum(clock.sleeps) <= 120.0

    server.plan = ("DONE",)
    result = await prove(server, clock, tmp_path)
    assert result.resumed is True
    assert server.created == 1
    assert server.count("submit") == 1


async def test_wrong_fact_is_refused(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.wrong_fact = True
    with pytest.raises(AtlanticFactMismatchError) as info:
        await prove(server, clock, tmp_path)
    assert info.value.code == "atlantic_fact_mismatch"
    assert not (tmp_path / "atlantic_proof.json").exists()


async def test_done_without_fact_on_l2_is_a_bad_response(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.fact_override = 0
    with pytest.raises(AtlanticFactMismatchError):
        await prove(server, clock, tmp_path)


async def test_proof_generation_requires_the_proof_file(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.serve_proof = False
    with pytest.raises(AtlanticBadResponseError, match=r"proof\.json"):
        await prove(server, clock, tmp_path, atlantic_result="PROOF_GENERATION")
    result = await prove(server, clock, tmp_path)  # L2 verification: no file needed
    assert result.proof_path is None


async def test_the_api_key_never_leaks(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    messages: list[str] = []
    with capture_logs() as logs:
        for fault in ("402", "400", "500json"):
            server.script("submit", fault)
            with pytest.raises(AtlanticError) as info:
                await prove(server, clock, tmp_path, job=f"k-{fault}")
            messages += [str(info.value), repr(info.value)]
        server.script("submit", *["503"] * ATTEMPTS)
        with pytest.raises(AtlanticUnavailableError) as unavailable:
            await prove(server, clock, tmp_path, job="k-503")
        messages.append(str(unavailable.value))
        await prove(server, clock, tmp_path, job="k-ok")
    settings = settings_for(server)
    client = AtlanticClient(settings)
    messages += [repr(client), repr(settings), str(settings), json.dumps(logs, default=str)]
    await client.aclose()
    assert len(logs) > 0
    assert all(server.api_key not in text for text in messages)


async def test_wrong_key_is_a_final_error_naming_the_secret(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    with pytest.raises(AtlanticRejectedError, match="atlantic_api_key") as info:
        await prove(server, clock, tmp_path, atlantic_api_key=SecretStr("not-the-key"))
    assert "not-the-key" not in str(info.value)
    assert server.count("lookup") == 0  # refused before any lookup was answered
    assert server.created == 0


async def test_secret_str_keys_are_accepted(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    settings = settings_for(server, atlantic_api_key=None)
    async with AtlanticClient(
        settings, api_key=SecretStr(server.api_key), sleep=clock.sleep, clock=clock
    ) as client:
        query_id = await client.find_by_dedup_id("nothing-here")
    assert query_id is None


def test_a_missing_key_is_bad_input() -> None:
    with pytest.raises(InputError, match="API key"):
        AtlanticClient(ProverSettings())


# --- one query per job for its whole life ------------------------------------------------


async def test_the_query_id_is_reported_before_the_wait_and_a_deadline_resumes_it(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.plan = ("IN_PROGRESS",)
    record = JobRecord()
    with pytest.raises(AtlanticDeadlineError):
        await prove(server, clock, tmp_path, record=record, atlantic_deadline_s=60.0)
    (query,) = server.queries.values()
    assert record.query_id == query.id  # known before the attempt failed
    assert [(r.dedup_id, r.generation, r.submitted, r.replaces) for r in record.refs] == [
        (f"{JOB}#0", 0, True, None)
    ]

    server.set_plan(query.id, "DONE")
    result = await prove(server, clock, tmp_path, record=record)
    assert result.resumed is True
    assert result.query_id == query.id
    assert server.created == 1
    assert server.count("submit") == 1
    assert len(record.refs) == 1  # the known query is not reported again


async def test_an_outage_while_polling_is_resumed_not_resubmitted(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    record = JobRecord()
    server.script("status", *["503"] * ATTEMPTS)
    with pytest.raises(AtlanticUnavailableError):
        await prove(server, clock, tmp_path, record=record)
    result = await prove(server, clock, tmp_path, record=record)
    assert result.proof_path is not None
    assert server.created == 1
    assert server.count("submit") == 1


async def test_a_bad_proof_download_is_retried_then_resumed_not_resubmitted(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    record = JobRecord()
    server.script("proof", *["html200"] * ATTEMPTS)
    with pytest.raises(AtlanticUnavailableError, match="not a JSON proof"):
        await prove(server, clock, tmp_path, record=record)
    assert server.count("proof") == ATTEMPTS  # retried, within the per-call attempts
    assert not (tmp_path / "atlantic_proof.json").exists()

    result = await prove(server, clock, tmp_path, record=record)
    assert result.proof_path is not None
    assert json.loads(result.proof_path.read_text()) == server.proof
    assert server.created == 1
    assert server.count("submit") == 1


async def test_a_known_query_is_resumed_even_when_the_dedup_index_lags(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.plan = ("IN_PROGRESS",)
    record = JobRecord()
    with pytest.raises(AtlanticDeadlineError):
        await prove(server, clock, tmp_path, record=record, atlantic_deadline_s=30.0)
    server.set_plan(str(record.query_id), "DONE")
    server.script("lookup", *["404"] * 5)  # the dedupId lookup would say "none"
    result = await prove(server, clock, tmp_path, record=record)
    assert result.query_id == record.query_id
    assert server.count("submit") == 1
    assert server.duplicate_posts == 0


async def test_a_failed_query_is_replaced_once_under_the_next_dedup_id(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.plans = [("IN_PROGRESS", "FAILED")]  # the first query fails; the next succeeds
    record = JobRecord()
    with pytest.raises(AtlanticQueryFailedError) as info:
        await prove(server, clock, tmp_path, record=record)
    first = server.by_dedup_id(f"{JOB}#0")

    with capture_logs() as logs:
        result = await prove(server, clock, tmp_path, record=record)
    second = server.by_dedup_id(f"{JOB}#1")
    assert (result.query_id, result.dedup_id, result.generation) == (second.id, f"{JOB}#1", 1)
    assert result.resumed is False
    replacing = record.refs[-1]
    assert replacing.submitted is True
    assert replacing.replaces == info.value.failure
    assert replacing.replaces is not None
    assert (replacing.replaces.query_id, replacing.replaces.reason) == (first.id, FAILURE_REASON)
    assert any(e["event"] == "atlantic.replacing_failed_query" for e in logs)
    assert server.created == 2

    again = await prove(server, clock, tmp_path, record=record)  # done: nothing new
    assert again.query_id == second.id
    assert server.created == 2


async def test_a_crash_between_failed_and_persisting_the_new_query_finds_it(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.plans = [("FAILED",)]
    record = JobRecord()
    with pytest.raises(AtlanticQueryFailedError):
        await prove(server, clock, tmp_path, record=record)
    persisted = record.query_id  # the FAILED query, as the store still has it

    class StoreDown(Exception):
        pass

    def crash(ref: AtlanticQueryRef) -> None:
        raise StoreDown(ref.query_id)  # the POST went through; the keeper dies here

    async with AtlanticClient(settings_for(server), sleep=clock.sleep, clock=clock) as client:
        with pytest.raises(StoreDown):
            await client.prove(
                program=PROGRAM,
                program_input=PROGRAM_INPUT,
                outputs=OUTPUTS,
                job_key=JOB,
                n_steps=N_STEPS,
                out_dir=tmp_path,
                query_id=persisted,
                on_query=crash,
            )
    assert server.created == 2

    restarted = await prove(server, clock, tmp_path, record=record)  # still the old id
    assert restarted.dedup_id == f"{JOB}#1"
    assert restarted.resumed is True
    forgotten = await prove(server, clock, tmp_path)  # nothing persisted at all
    assert forgotten.query_id == restarted.query_id
    assert server.created == 2
    assert server.duplicate_posts == 0


async def test_a_job_pays_for_at_most_max_queries(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.plan = ("FAILED",)
    record = JobRecord()
    with pytest.raises(AtlanticQueryFailedError) as first:
        await prove(server, clock, tmp_path, record=record, atlantic_max_queries_per_job=2)
    assert first.value.next_dedup_id == f"{JOB}#1"
    with pytest.raises(AtlanticQueryFailedError) as second:
        await prove(server, clock, tmp_path, record=record, atlantic_max_queries_per_job=2)
    assert second.value.next_dedup_id is None
    assert "no new one will be submitted" in str(second.value)
    for known in (record, None):
        with pytest.raises(AtlanticQueryLimitError, match="atlantic_max_queries_per_job") as info:
            await prove(server, clock, tmp_path, record=known, atlantic_max_queries_per_job=2)
        assert info.value.code == "atlantic_query_limit"
        assert FAILURE_REASON in str(info.value)
    assert server.created == 2
    assert server.count("submit") == 2


async def test_a_known_query_of_another_job_is_not_resumed(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    other = await prove(server, clock, tmp_path, job="router-1:epoch-6")
    record = JobRecord()
    record.query_id = other.query_id
    result = await prove(server, clock, tmp_path, record=record)
    assert result.query_id != other.query_id
    assert result.dedup_id == f"{JOB}#0"
    assert server.created == 2


async def test_an_empty_job_key_is_refused(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="job key"):
        await prove(server, clock, tmp_path, job="")
    assert server.requests == []


# --- declaredJobSize --------------------------------------------------------------------


async def test_the_declared_job_size_override_is_sent(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    await prove(server, clock, tmp_path, atlantic_declared_job_size="M")
    (query,) = server.queries.values()
    assert query.form["declaredJobSize"] == "M"


@pytest.mark.parametrize(
    ("n_steps", "size"),
    [(0, "S"), (2**23, "S"), (12_999_999, "S"), (13_000_000, "M"), (2**24, "M"),
     (29_999_999, "M"), (30_000_000, "L"), (2**30, "L")],
)
def test_job_size_table(n_steps: int, size: str) -> None:
    assert atlantic_job_size(n_steps) == size
    assert ProverSettings().atlantic_declared_size(n_steps) == size
    assert ProverSettings(atlantic_declared_job_size="XS").atlantic_declared_size(n_steps) == "XS"


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=2**40))
def test_job_size_grows_with_the_trace(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert JOB_SIZES.index(atlantic_job_size(low)) <= JOB_SIZES.index(atlantic_job_size(high))


@pytest.mark.parametrize("bad", [-1, True, 1.5, "4096"])
def test_job_size_refuses_what_is_not_a_step_count(bad: Any) -> None:
    with pytest.raises(ValueError, match="n_steps"):
        atlantic_job_size(bad)
