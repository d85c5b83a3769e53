"""The proving policy: fallback, circuit breaker, attempts and costs."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from prover.atlantic import (
    AtlanticClient,
    AtlanticOutOfCreditError,
    AtlanticQueryRef,
    AtlanticResult,
    AtlanticUnavailableError,
    OnQuery,
)
from prover.errors import InputError
from prover.facts import direct_fact, program_hash
from prover.fri import FriParameters
from prover.policy import (
    CircuitBreaker,
    ProofAttempt,
    ProofRequest,
    ProvingFailedError,
    ProvingPolicy,
)
from prover.settings import ProverSettings
from prover.stone import StoneResult, StoneRunner, StoneTimeoutError
from tests.support.reference import STONE_SAMPLES

FAKES = Path(__file__).resolve().parents[1] / "fakes"
sys.path.insert(0, str(FAKES))
from atlantic_server import FakeAtlantic, atlantic_fact  # noqa: E402

SAMPLES = STONE_SAMPLES
OUTPUTS = (3, 5000, 3000, 2000, 5000)
SETTINGS = ProverSettings(
    atlantic_api_key="k",
    atlantic_price_per_job_size={"S": Decimal("0.25"), "M": Decimal("1")},
    circuit_breaker_failures=3,
    circuit_breaker_cooldown_s=600.0,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeStone:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    async def prove(
        self, trace_dir: Path, *, out_dir: Path | None = None, program_path: Path | None = None
    ) -> StoneResult:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return StoneResult(
            proof_path=trace_dir / "proof.json",
            proof_bytes=1000,
            wall_seconds=2.0,
            cpu_seconds=3.5,
            peak_rss_mb=100.0,
            security_bits=96,
            fact_hash=0x5705E,
            outputs=OUTPUTS,
            parameter_set="stone6",
            stone_generation="stone5_or_stone6",
            fri=FriParameters((0, 4, 4, 2), 64, 38, 20, 2),
        )


class FakeAtlanticProver:
    def __init__(self, *errors: Exception, job_size: str | None = "S") -> None:
        self.errors = list(errors)
        self.calls: list[str] = []
        self.known: list[str | None] = []
        self.n_steps: list[int] = []
        self.job_size = job_size

    async def prove(
        self,
        *,
        program: Mapping[str, Any],
        program_input: Mapping[str, Any],
        outputs: Sequence[int],
        job_key: str,
        n_steps: int,
        out_dir: Path,
        query_id: str | None = None,
        on_query: OnQuery | None = None,
    ) -> AtlanticResult:
        self.calls.append(job_key)
        self.known.append(query_id)
        self.n_steps.append(n_steps)
        assert tuple(outputs) == OUTPUTS
        if on_query is not None and query_id is None:
            on_query(AtlanticQueryRef(job_key, "q1", f"{job_key}#0", 0, True, None))
        if self.errors:
            raise self.errors.pop(0)
        return AtlanticResult(
            query_id="q1",
            resumed=False,
            proof_path=out_dir / "atlantic_proof.json",
            proof_bytes=2000,
            fact_hash=0xA71,
            reported_fact_hash=0xA71,
            job_size=self.job_size,
            layout="small",
            wall_seconds=60.0,
        )


class DevRegistry:
    def __init__(self) -> None:
        self.facts: list[int] = []

    async def register_dev_fact(self, fact_hash: int, request: ProofRequest) -> None:
        self.facts.append(fact_hash)


def make_policy(
    stone: Any,
    atlantic: Any,
    *,
    clock: Clock | None = None,
    dev: Any = None,
    settings: ProverSettings = SETTINGS,
) -> tuple[ProvingPolicy, list[ProofAttempt]]:
    attempts: list[ProofAttempt] = []
    policy = ProvingPolicy(
        settings,
        stone=stone,
        atlantic=atlantic,
        on_attempt=attempts.append,
        clock=clock or Clock(),
        dev=dev,
    )
    return policy, attempts


def request(trace_dir: Path, key: str = "router:7") -> ProofRequest:
    return ProofRequest(trace_dir=trace_dir, idempotency_key=key)


async def test_stone_success_does_not_touch_atlantic(trace_dir: Path) -> None:
    atlantic = FakeAtlanticProver()
    policy, attempts = make_policy(FakeStone(), atlantic)
    outcome = await policy.prove(request(trace_dir))
    assert outcome.prover == "stone"
    assert outcome.fact_hash == 0x5705E
    assert outcome.security_bits == 96
    assert outcome.cost.cpu_seconds == 3.5
    assert outcome.cost.price is None
    assert [(a.prover, a.outcome, a.reason, a.proof_bytes) for a in attempts] == [
        ("stone", "ok", None, 1000)
    ]
    assert outcome.attempts == tuple(attempts)
    assert atlantic.calls == []


async def test_stone_failure_falls_back_to_atlantic(trace_dir: Path) -> None:
    atlantic = FakeAtlanticProver()
    policy, attempts = make_policy(FakeStone(StoneTimeoutError("slow")), atlantic)
    outcome = await policy.prove(request(trace_dir))
    assert outcome.prover == "atlantic"
    assert outcome.fact_hash == 0xA71
    assert atlantic.calls == ["router:7"]  # the job's idempotency key names its query
    assert atlantic.n_steps == [4096]  # the trace's length: Atlantic's declaredJobSize
    assert [(a.prover, a.outcome, a.reason) for a in attempts] == [
        ("stone", "failed", "timeout"),
        ("atlantic", "ok", None),
    ]
    assert outcome.cost.price == Decimal("0.25")
    assert outcome.cost.currency == "USD"
    assert "job size S" in outcome.cost.basis


async def test_missing_stone_falls_back_to_atlantic(trace_dir: Path) -> None:
    policy, attempts = make_policy(None, FakeAtlanticProver())
    outcome = await policy.prove(request(trace_dir))
    assert outcome.prover == "atlantic"
    assert [(a.prover, a.outcome, a.reason) for a in attempts] == [
        ("stone", "skipped", "binary_missing"),
        ("atlantic", "ok", None),
    ]


async def test_stone_only_raises_the_stone_error(trace_dir: Path) -> None:
    atlantic = FakeAtlanticProver()
    policy, attempts = make_policy(FakeStone(StoneTimeoutError("slow")), atlantic)
    with pytest.raises(StoneTimeoutError):
        await policy.prove(request(trace_dir), policy="stone_only")
    assert atlantic.calls == []
    assert len(attempts) == 1


async def test_atlantic_only_skips_stone(trace_dir: Path) -> None:
    stone = FakeStone()
    policy, attempts = make_policy(stone, FakeAtlanticProver())
    outcome = await policy.prove(request(trace_dir), policy="atlantic_only")
    assert outcome.prover == "atlantic"
    assert stone.calls == 0
    assert [a.prover for a in attempts] == ["atlantic"]


async def test_both_failing_reports_every_attempt(trace_dir: Path) -> None:
    policy, attempts = make_policy(
        FakeStone(StoneTimeoutError("slow")),
        FakeAtlanticProver(AtlanticUnavailableError("down")),
    )
    with pytest.raises(ProvingFailedError) as info:
        await policy.prove(request(trace_dir))
    assert info.value.code == "no_proof"
    assert "stone: timeout" in str(info.value)
    assert "atlantic: atlantic_unavailable" in str(info.value)
    assert info.value.attempts == tuple(attempts)
    assert attempts[1].cost.price is None
    assert "unknown" in attempts[1].cost.basis


async def test_input_errors_do_not_fall_back(trace_dir: Path) -> None:
    atlantic = FakeAtlanticProver()
    policy, _ = make_policy(FakeStone(InputError("no trace")), atlantic)
    with pytest.raises(InputError):
        await policy.prove(request(trace_dir))
    assert atlantic.calls == []


async def test_unpriced_job_size_is_recorded_as_unpriced(trace_dir: Path) -> None:
    policy, attempts = make_policy(None, FakeAtlanticProver(job_size="XL"))
    outcome = await policy.prove(request(trace_dir))
    assert outcome.cost.price is None
    assert outcome.cost.basis == "no configured price for Atlantic job size XL"
    assert attempts[-1].cost == outcome.cost


async def test_breaker_opens_after_repeated_failures_and_half_opens(trace_dir: Path) -> None:
    clock = Clock()
    failures = [AtlanticUnavailableError("down") for _ in range(4)]
    atlantic = FakeAtlanticProver(*failures)
    policy, attempts = make_policy(None, atlantic, clock=clock)
    for _ in range(3):
        with pytest.raises(ProvingFailedError):
            await policy.prove(request(trace_dir))
    assert len(atlantic.calls) == 3

    with pytest.raises(ProvingFailedError) as info:
        await policy.prove(request(trace_dir))
    assert len(atlantic.calls) == 3  # open: not called
    assert attempts[-1].outcome == "skipped"
    assert attempts[-1].reason == "atlantic_circuit_open"
    assert "atlantic_circuit_open" in str(info.value)

    clock.now += 600.0  # cool-down over: one trial, which fails and reopens at once
    with pytest.raises(ProvingFailedError):
        await policy.prove(request(trace_dir))
    assert len(atlantic.calls) == 4
    clock.now += 1.0
    with pytest.raises(ProvingFailedError):
        await policy.prove(request(trace_dir))
    assert len(atlantic.calls) == 4

    clock.now += 600.0  # next trial succeeds and closes the breaker
    assert (await policy.prove(request(trace_dir))).prover == "atlantic"
    assert (await policy.prove(request(trace_dir))).prover == "atlantic"
    assert len(atlantic.calls) == 6


async def test_out_of_credit_shuts_atlantic_out_at_once_and_keeps_the_cause(
    trace_dir: Path,
) -> None:
    atlantic = FakeAtlanticProver(AtlanticOutOfCreditError("top up"))
    policy, attempts = make_policy(None, atlantic, settings=SETTINGS)
    with pytest.raises(ProvingFailedError):
        await policy.prove(request(trace_dir))
    with pytest.raises(ProvingFailedError) as info:
        await policy.prove(request(trace_dir))
    assert len(atlantic.calls) == 1
    assert attempts[-1].reason == "atlantic_out_of_credit"
    assert "atlantic: atlantic_out_of_credit (Atlantic is out of credit" in str(info.value)
    assert "top up the credit of the Herodotus Cloud project" in str(info.value)
    assert policy.breaker.allows()  # an empty account is not an outage


async def test_the_breaker_says_what_failed(trace_dir: Path) -> None:
    failures = [AtlanticUnavailableError(f"down {n}") for n in range(3)]
    policy, attempts = make_policy(None, FakeAtlanticProver(*failures))
    for _ in range(4):
        with pytest.raises(ProvingFailedError):
            await policy.prove(request(trace_dir))
    assert attempts[-1].reason == "atlantic_circuit_open"
    assert "3 times in a row (last: atlantic_unavailable: down 2)" in attempts[-1].detail
    assert not policy.atlantic_allows()


async def test_the_job_query_is_passed_in_and_reported_out(trace_dir: Path) -> None:
    atlantic = FakeAtlanticProver()
    policy, _ = make_policy(None, atlantic)
    seen: list[AtlanticQueryRef] = []
    await policy.prove(
        ProofRequest(trace_dir=trace_dir, idempotency_key="job-1", on_atlantic_query=seen.append)
    )
    assert [(r.query_id, r.dedup_id) for r in seen] == [("q1", "job-1#0")]
    await policy.prove(
        ProofRequest(trace_dir=trace_dir, idempotency_key="job-1", atlantic_query_id="q1")
    )
    assert atlantic.known == [None, "q1"]


@given(events=st.lists(st.sampled_from(["ok", "fail", "wait"]), max_size=30))
def test_breaker_matches_a_reference_model(events: list[str]) -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 100.0, clock)
    streak, opened_at = 0, None
    for event in events:
        expect_allows = opened_at is None or clock.now - opened_at >= 100.0
        assert breaker.allows() == expect_allows
        if event == "wait":
            clock.now += 60.0
        elif expect_allows and event == "ok":
            breaker.record_success()
            streak, opened_at = 0, None
        elif expect_allows:
            breaker.record_failure()
            streak += 1
            if streak >= 3 or opened_at is not None:
                opened_at = clock.now


async def test_dev_policy_registers_the_direct_fact_without_a_proof(trace_dir: Path) -> None:
    registry = DevRegistry()
    stone, atlantic = FakeStone(), FakeAtlanticProver()
    policy, attempts = make_policy(stone, atlantic, dev=registry)
    outcome = await policy.prove(request(trace_dir), policy="dev")
    program = json.loads((SAMPLES / "weights_compiled.json").read_text())
    expected = direct_fact(program_hash(program), OUTPUTS)
    assert outcome.prover == "dev"
    assert outcome.proof_path is None
    assert outcome.fact_hash == expected
    assert registry.facts == [expected]
    assert stone.calls == 0
    assert atlantic.calls == []
    assert [(a.prover, a.outcome) for a in attempts] == [("dev", "ok")]


async def test_real_runner_timeout_falls_back_to_local_atlantic(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STONE_MODE", "hang")
    with FakeAtlantic(outputs=OUTPUTS).running() as server:
        settings = SETTINGS.model_copy(
            update=dict(
                stone_prover_path=FAKES / "stone" / "cpu_air_prover",
                stone_verifier_path=FAKES / "stone" / "cpu_air_verifier",
                timeout_s=1.5,
                atlantic_base_url=server.base_url,
                atlantic_api_key=SecretStr(server.api_key),
                atlantic_poll_interval_s=0.01,
                atlantic_poll_max_interval_s=0.02,
            )
        )
        async with AtlanticClient(settings) as client:
            policy, attempts = make_policy(StoneRunner(settings), client, settings=settings)
            outcome = await policy.prove(request(trace_dir))
    assert outcome.prover == "atlantic"
    assert outcome.fact_hash == atlantic_fact(
        json.loads((SAMPLES / "weights_compiled.json").read_text()), OUTPUTS
    )
    assert [(a.prover, a.outcome, a.reason) for a in attempts] == [
        ("stone", "failed", "timeout"),
        ("atlantic", "ok", None),
    ]
    assert server.created == 1
    assert outcome.cost.price == Decimal("0.25")


async def test_out_of_credit_against_atlantic_no_call_until_the_check(trace_dir: Path) -> None:
    clock = Clock()
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def wall() -> datetime:
        return start + timedelta(seconds=clock.now)

    with FakeAtlantic(outputs=OUTPUTS, plan=("DONE",)).running() as server:
        settings = SETTINGS.model_copy(
            update=dict(
                atlantic_base_url=server.base_url, atlantic_api_key=SecretStr(server.api_key)
            )
        )
        server.script("submit", "402", "402")
        async with AtlanticClient(settings) as client:
            attempts: list[ProofAttempt] = []

            def build(**extra: Any) -> ProvingPolicy:
                return ProvingPolicy(settings, stone=None, atlantic=client,
                                     on_attempt=attempts.append, clock=clock, wall_clock=wall,
                                     **extra)

            policy = build()
            with pytest.raises(AtlanticOutOfCreditError, match="out of Atlantic credit: top up"):
                await policy.prove(request(trace_dir), policy="atlantic_only")
            status = policy.atlantic_credit_status()
            assert (status.out_of_credit, status.since, status.next_check_in_s) == (
                True, start, 600.0
            )
            assert policy.atlantic_out_of_credit_since == start
            assert status.detail == "Not enough credits to run this query"  # Atlantic's words
            calls = len(server.requests)
            assert calls == 2  # the free lookup, and the POST Atlantic refused

            # A reload rebuilds the policy: it must not forget, nor call Atlantic.
            policy = build(atlantic_credit=policy.atlantic_credit)
            clock.now += 599.0
            with pytest.raises(AtlanticOutOfCreditError) as skipped:
                await policy.prove(request(trace_dir), policy="atlantic_only")
            assert skipped.value.code == "atlantic_out_of_credit"
            assert "since 2026-01-02T03:04:05+00:00" in str(skipped.value)
            assert "top up the credit of the Herodotus Cloud project" in str(skipped.value)
            assert "No Atlantic call is made for another 1 s" in str(skipped.value)
            assert len(server.requests) == calls
            assert not policy.atlantic_allows()

            clock.now += 1.0  # the check: the next job's POST; still no credit
            with pytest.raises(AtlanticOutOfCreditError):
                await policy.prove(request(trace_dir), policy="atlantic_only")
            status = policy.atlantic_credit_status()
            assert (status.since, status.last_refused) == (start, start + timedelta(seconds=600))
            assert len(server.requests) == calls + 2

            clock.now += 600.0  # topped up meanwhile: the POST is accepted
            outcome = await policy.prove(request(trace_dir), policy="atlantic_only")
            assert outcome.prover == "atlantic"
            assert policy.atlantic_credit_status().as_json() == {
                "out_of_credit": False, "since": None, "last_refused": None, "detail": None,
                "next_check_in_s": 0.0,
            }
    assert [(a.outcome, a.reason) for a in attempts] == [
        ("failed", "atlantic_out_of_credit"),
        ("skipped", "atlantic_out_of_credit"),
        ("failed", "atlantic_out_of_credit"),
        ("ok", None),
    ]
    assert server.created == 1
