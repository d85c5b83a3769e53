"""The Atlantic client against a local Atlantic stand-in with scripted faults."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from prover.atlantic import (
    AtlanticBadResponseError,
    AtlanticClient,
    AtlanticDeadlineError,
    AtlanticError,
    AtlanticFactMismatchError,
    AtlanticOutOfCreditError,
    AtlanticQueryFailedError,
    AtlanticRejectedError,
    AtlanticUnavailableError,
)
from prover.errors import InputError
from prover.settings import ProverSettings
from tests.support.reference import STONE_SAMPLES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from atlantic_server import FakeAtlantic, atlantic_fact

SAMPLES = STONE_SAMPLES
OUTPUTS = (3, 5000, 3000, 2000, 5000)
PROGRAM: dict[str, Any] = json.loads((SAMPLES / "weights_compiled.json").read_text())
PROGRAM_INPUT: dict[str, Any] = json.loads((SAMPLES / "input.json").read_text())
ATTEMPTS = 5


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
    base = ProverSettings(
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
    )
    return replace(base, **overrides)


async def prove(
    server: FakeAtlantic,
    clock: FakeClock,
    out_dir: Path,
    dedup: str = "router-1:epoch-7",
    **overrides: Any,
) -> Any:
    async with AtlanticClient(
        settings_for(server, **overrides), sleep=clock.sleep, clock=clock
    ) as client:
        return await client.prove(
            program=PROGRAM,
            program_input=PROGRAM_INPUT,
            outputs=OUTPUTS,
            dedup_id=dedup,
            out_dir=out_dir,
        )


async def test_happy_path(server: FakeAtlantic, clock: FakeClock, tmp_path: Path) -> None:
    result = await prove(server, clock, tmp_path)

    assert result.fact_hash == atlantic_fact(PROGRAM, OUTPUTS)
    assert result.reported_fact_hash == result.fact_hash
    assert result.resumed is False
    assert result.job_size == "S"
    assert result.proof_path == tmp_path / "atlantic_proof.json"
    assert json.loads(result.proof_path.read_text()) == server.proof
    assert server.created == 1
    assert server.duplicate_posts == 0
    assert server.requests[0] == ("lookup", "404")  # looked up before submitting
    query = next(iter(server.queries.values()))
    assert query.form["cairoVersion"] == "cairo0"
    assert query.form["cairoVm"] == "python"
    assert query.form["dedupId"] == "router-1:epoch-7"
    assert query.form["network"] == "TESTNET"
    assert query.form["result"] == "PROOF_VERIFICATION_ON_L2"
    assert query.program == PROGRAM
    assert query.program_input == PROGRAM_INPUT
    assert not server.key_in_query_string
    assert not server.key_sent_to_storage


@pytest.mark.parametrize(
    "fault", ["429", "502", "503", "504", "500html", "html200", "drop", "slow", "drop_after_accept"]
)
async def test_transient_submit_faults_never_duplicate_the_query(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path, fault: str
) -> None:
    server.retry_after = "0"
    server.script("submit", fault)
    result = await prove(server, clock, tmp_path)
    assert result.fact_hash == atlantic_fact(PROGRAM, OUTPUTS)
    assert server.created == 1
    # "slow": the abandoned first POST may land after the retry's; dedupId refuses it.
    assert server.duplicate_posts <= (1 if fault == "slow" else 0)
    assert server.count("lookup") == 2  # the retry looked the dedupId up first


async def test_post_accepted_but_reply_lost_is_found_by_dedup_id(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path
) -> None:
    server.script("submit", "drop_after_accept")
    await prove(server, clock, tmp_path)
    assert server.count("submit") == 1  # found by dedupId: never POSTed again
    assert server.created == 1


@pytest.mark.parametrize("endpoint", ["lookup", "status", "proof"])
@pytest.mark.parametrize("fault", ["503", "drop", "slow", "500html"])
async def test_transient_faults_elsewhere_are_retried(
    server: FakeAtlantic, clock: FakeClock, tmp_path: Path, endpoint: str, fault: str
) -> None:
    server.script(endpoint, fault, fault)
    result = await prove(server, clock, tmp_path)
    assert result.proof_path is not None
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
    with pytest.raises(AtlanticQueryFailedError, match="assert failed"):
        await prove(server, clock, tmp_path)
    assert server.created == 1


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
                await prove(server, clock, tmp_path, dedup=f"k-{fault}")
            messages += [str(info.value), repr(info.value)]
        server.script("submit", *["503"] * ATTEMPTS)
        with pytest.raises(AtlanticUnavailableError) as unavailable:
            await prove(server, clock, tmp_path, dedup="k-503")
        messages.append(str(unavailable.value))
        await prove(server, clock, tmp_path, dedup="k-ok")
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
        await prove(server, clock, tmp_path, atlantic_api_key="not-the-key")
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
