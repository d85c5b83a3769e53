from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from keeper.core.config import load_config
from keeper.ops.metrics import KeeperMetrics
from keeper.store.db import open_store
from keeper.stream import open_event_log
from keeper.stream.eventlog import Block, Cursor, RawEvent, StreamPosition
from keeper.stream.events import SELECTORS, EventMeta

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "keeper.example.toml"

SERIES = [
    "keeper_events_total",
    "keeper_events_quarantined_total",
    "keeper_jobs",
    "keeper_proof_seconds",
    "keeper_fees_total",
    "keeper_prover_fallbacks_total",
    "keeper_stream_lag_blocks",
    "keeper_stream_cursor_block",
    "keeper_stream_head_block",
    "keeper_stream_finalized_block",
    "keeper_stream_source_info",
    "keeper_last_successful_job_timestamp_seconds",
    "keeper_prover_available",
    "keeper_build_info",
    "keeper_jobs_parked",
    "keeper_jobs_failing",
    "keeper_atlantic_out_of_credit",
    "keeper_account_balance_strk",
    "keeper_rebalances_funded",
    "keeper_funds_min_rebalances",
    "keeper_jobs_waiting_for_funds",
    "keeper_cost_per_allocation_strk",
    "keeper_verification_cost_per_allocation_strk",
    "keeper_due_to_executed_seconds",
    "keeper_stream_last_progress_timestamp_seconds",
    "keeper_waiting_for_governance",
    "keeper_ahead_proofs_total",
    "keeper_ahead_discarded_cpu_seconds_total",
]


def samples(metrics: KeeperMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: KeeperMetrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def exercised() -> KeeperMetrics:
    m = KeeperMetrics()
    m.event_ingested("RebalanceExecuted")
    m.event_ingested("RebalanceExecuted")
    m.event_ingested("RiskScoresUpdated")
    m.event_quarantined()
    m.job_state_counts({"proving": 1, "done": 4})
    m.proof_done("stone", 7.5)
    m.fee_paid("submit_allocation", 1.5e15, "fri")
    m.fee_paid("proof", 0.25, "usd")
    m.fallback("stone", "atlantic")
    m.stream_lag(3)
    m.stream_position(StreamPosition("dna", cursor=Cursor(40), finalized=Cursor(30)))
    m.job_succeeded(1_700_000_000.0)
    m.prover_available("stone", True)
    m.prover_available("atlantic", False)
    m.jobs_parked(0)
    m.jobs_failing(1)
    m.atlantic_out_of_credit(False)
    m.account_balance(12 * 10**18 + 5 * 10**17)
    m.rebalances_funded(41, 10)
    m.jobs_waiting_for_funds(1)
    m.cost_per_allocation("stone", 285 * 10**15, 280 * 10**15)
    m.due_to_executed(95.0)
    m.stream_progressed(1_700_000_100.0)
    m.waiting_for_governance(True)
    m.ahead_proof("made", 0.0)
    m.ahead_proof("discarded", 70.5)
    return m


def test_every_named_series_is_exposed() -> None:
    text = exercised().exposition().decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    for name in SERIES:
        # The parser names counter families without the _total suffix.
        assert name in families or name.removesuffix("_total") in families, name
        assert name in text, name


def test_proofs_made_ahead_count_by_outcome_and_discarded_cpu() -> None:
    m = exercised()
    m.ahead_proof("discarded", 1.5)
    m.ahead_proof("used", 0.0)
    assert value(m, "keeper_ahead_proofs_total", outcome="discarded") == 2
    assert value(m, "keeper_ahead_proofs_total", outcome="used") == 1
    assert value(m, "keeper_ahead_discarded_cpu_seconds_total") == 72.0


def test_the_funds_series_read_in_strk() -> None:
    m = exercised()
    assert value(m, "keeper_account_balance_strk") == 12.5
    assert value(m, "keeper_rebalances_funded") == 41
    assert value(m, "keeper_funds_min_rebalances") == 10
    assert value(m, "keeper_jobs_waiting_for_funds") == 1
    assert value(m, "keeper_cost_per_allocation_strk", prover="stone") == 0.285
    assert value(m, "keeper_verification_cost_per_allocation_strk", prover="stone") == 0.28
    assert value(m, "keeper_due_to_executed_seconds_count") == 1
    assert value(m, "keeper_due_to_executed_seconds_bucket", le="120.0") == 1
    assert value(m, "keeper_due_to_executed_seconds_bucket", le="60.0") == 0
    assert value(m, "keeper_waiting_for_governance") == 1


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_a_due_to_executed_time_that_is_not_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="due to executed"):
        KeeperMetrics().due_to_executed(bad)


def test_values_after_the_loops_calls() -> None:
    m = exercised()
    assert value(m, "keeper_events_total", kind="RebalanceExecuted") == 2
    assert value(m, "keeper_events_total", kind="RiskScoresUpdated") == 1
    assert value(m, "keeper_events_quarantined_total") == 1
    assert value(m, "keeper_jobs", state="proving") == 1
    assert value(m, "keeper_jobs", state="done") == 4
    assert value(m, "keeper_proof_seconds_count", prover="stone") == 1
    assert value(m, "keeper_proof_seconds_sum", prover="stone") == 7.5
    assert value(m, "keeper_proof_seconds_bucket", prover="stone", le="10.0") == 1
    assert value(m, "keeper_proof_seconds_bucket", prover="stone", le="5.0") == 0
    assert value(m, "keeper_fees_total", purpose="submit_allocation", unit="fri") == 1.5e15
    assert value(m, "keeper_fees_total", purpose="proof", unit="usd") == 0.25
    assert value(m, "keeper_prover_fallbacks_total", **{"from": "stone", "to": "atlantic"}) == 1
    assert value(m, "keeper_stream_lag_blocks") == 3
    assert value(m, "keeper_last_successful_job_timestamp_seconds") == 1_700_000_000.0
    assert value(m, "keeper_prover_available", prover="stone") == 1
    assert value(m, "keeper_prover_available", prover="atlantic") == 0


def test_quarantined_events_are_counted(tmp_path: Path) -> None:
    """The daemon's seam: the event log reports what it quarantined, the metric counts it."""
    metrics = KeeperMetrics()
    config = load_config(EXAMPLE, {})
    router = int(config.chain.router_address, 16)
    rebalance = SELECTORS["RebalanceRequested"]

    def event(tx: int, keys: list[int], data: list[int]) -> RawEvent:
        return RawEvent(EventMeta(5, 0xB5, tx, 0, router), tuple(keys), tuple(data))

    malformed = [event(2, [rebalance, 1], []), event(3, [0x1234], [])]  # short; unknown
    with open_store(tmp_path / "keeper.sqlite3") as store:
        log = open_event_log(store, config, on_quarantine=metrics.event_quarantined)
        log.ingest([Block(5, 0xB5, (event(1, [rebalance, 7], [0xAB, 1]), *malformed))], Cursor(5))
        log.ingest([Block(5, 0xB5, tuple(malformed))], Cursor(5))  # a replay: not again
    assert value(metrics, "keeper_events_quarantined_total") == 2


def test_quarantine_counts_only_go_up() -> None:
    m = KeeperMetrics()
    m.event_quarantined(3)
    with pytest.raises(ValueError, match="counted up"):
        m.event_quarantined(-1)
    assert value(m, "keeper_events_quarantined_total") == 3


def test_job_states_that_disappear_read_zero() -> None:
    m = KeeperMetrics()
    m.job_state_counts({"proving": 1, "submitted": 2})
    m.job_state_counts({"done": 3})
    assert value(m, "keeper_jobs", state="proving") == 0
    assert value(m, "keeper_jobs", state="submitted") == 0
    assert value(m, "keeper_jobs", state="done") == 3


def test_registries_are_independent() -> None:
    a, b = KeeperMetrics(), KeeperMetrics()
    a.event_ingested("X")
    assert value(a, "keeper_events_total", kind="X") == 1
    assert ("keeper_events_total", frozenset({("kind", "X")})) not in samples(b)


def test_negative_lag_reads_zero() -> None:
    m = KeeperMetrics()
    m.stream_lag(-2)  # head older than our cursor (a lagging node): not "ahead"
    assert value(m, "keeper_stream_lag_blocks") == 0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_amounts_are_refused(bad: float) -> None:
    m = KeeperMetrics()
    with pytest.raises(ValueError, match="fee must be"):
        m.fee_paid("submit_allocation", bad, "fri")
    with pytest.raises(ValueError, match="proof time must be"):
        m.proof_done("stone", bad)


@given(st.lists(st.integers(min_value=0, max_value=10**18), max_size=20))
def test_fees_add_up(amounts: list[int]) -> None:
    m = KeeperMetrics()
    for amount in amounts:
        m.fee_paid("register_fact", amount, "fri")
    if amounts:
        assert value(m, "keeper_fees_total", purpose="register_fact", unit="fri") == pytest.approx(
            float(sum(amounts)), rel=1e-12
        )
