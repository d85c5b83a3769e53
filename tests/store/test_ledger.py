"""keeper.store.ledger and ``obsqra-keeper costs``: cost rows in, exact totals out."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.cli.main import main
from keeper.store.cost_table import format_fee, render
from keeper.store.db import Store, open_store
from keeper.store.jobs import Job, JobState, JobStore
from keeper.store.ledger import (
    UNATTRIBUTED,
    UNKNOWN_STEPS,
    AllocationCost,
    ConfirmedJob,
    CostEntry,
    Ledger,
    allocation_costs,
    build_report,
    median_fee,
    median_fees,
    summarize_allocations,
)

STRK = 10**18
PRICES = {"S": 2.5, "M": 7.0}
DAY1 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DAY2 = datetime(2025, 3, 2, 8, 30, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("KEEPER_") or key == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(key)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "keeper.sqlite3") as s:
        yield s


def _job(store: Store, job_id: str, *, state: str, prover: str | None, at: datetime) -> None:
    router, epoch = job_id.split(":")
    with store.transaction() as db:
        db.conn.execute(
            "INSERT INTO jobs (id, router, epoch, state, trigger, prover, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'interval', ?, ?, ?)",
            (job_id, router, int(epoch), state, prover, at.isoformat(), at.isoformat()),
        )


# --- job sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n_steps", "price"), [(12_999_999, "2.5"), (13_000_000, "7.0")])
def test_as_if_atlantic_prices_follow_the_one_job_size_table(
    store: Store, n_steps: int, price: str
) -> None:
    # prover.settings' table (13 M steps: S -> M) is the ledger's; no copy of its own.
    ledger = Ledger(store, clock=Clock(DAY1))
    ledger.record(None, CostEntry(None, "proof", "stone", "ok", n_steps=n_steps))
    report = ledger.report(None, atlantic_price_per_job_size=PRICES)
    assert report.total.as_if_atlantic_usd == Decimal(price)


# --- entries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "coffee"}, "kind must be one of"),
        ({"outcome": "skipped"}, "outcome must be one of ok, failed"),
        ({"prover": "sharp"}, "prover must be one of"),
        ({"fee_amount": 5}, "fee_amount and fee_unit go together"),
        ({"fee_amount": 5, "fee_unit": "GWEI"}, "fee_unit must be one of FRI, WEI"),
        ({"fee_amount": -5, "fee_unit": "FRI"}, "fee_amount must be a non-negative integer"),
        ({"fee_amount": 5.0, "fee_unit": "FRI"}, "fee_amount must be a non-negative integer"),
        ({"cpu_s": -0.1}, "cpu_s must be a non-negative number"),
        ({"wall_s": float("nan")}, "wall_s must be a non-negative number"),
        ({"n_steps": True}, "n_steps must be a non-negative integer"),
        ({"atlantic_job_size": "XXL"}, "atlantic_job_size must be one of"),
    ],
)
def test_bad_entries_are_refused(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"job_id": None, "kind": "proof", "prover": "stone", "outcome": "ok"}
    with pytest.raises(ValueError, match=message):
        CostEntry(**(base | fields))


def test_record_inside_the_callers_transaction_rolls_back_with_it(store: Store) -> None:
    ledger = Ledger(store)
    entry = CostEntry(None, "execution", None, "ok", fee_amount=1, fee_unit="FRI", tx_hash=0xA)
    with pytest.raises(RuntimeError, match="transition failed"), store.transaction() as db:
        ledger.record(db, entry)
        raise RuntimeError("transition failed")
    assert store.query("SELECT COUNT(*) AS n FROM costs")[0]["n"] == 0
    row_id = ledger.record(None, entry)
    row = store.query("SELECT * FROM costs WHERE id = ?", (row_id,))[0]
    assert (row["fee_amount"], row["fee_unit"], row["tx_hash"]) == ("1", "FRI", "0xa")


def test_huge_fees_survive_exactly(store: Store) -> None:
    huge = 2**100 + 12345
    ledger = Ledger(store)
    ledger.record(None, CostEntry(None, "execution", None, "ok", fee_amount=huge, fee_unit="FRI"))
    ledger.record(None, CostEntry(None, "execution", None, "ok", fee_amount=2**64, fee_unit="FRI"))
    report = ledger.report(None, atlantic_price_per_job_size=PRICES)
    assert report.total.fees == {"FRI": huge + 2**64}
    assert report.as_json()["total"]["fees"] == {"FRI": str(huge + 2**64)}
    assert format_fee(huge, "FRI") == f"{huge // STRK}.{huge % STRK:018d}".rstrip("0") + " STRK"


# --- the report --------------------------------------------------------------------------


def _seed(store: Store) -> None:
    """Two confirmed jobs (stone on day 1, atlantic after a stone failure on day 2), one open
    dev job on day 2, and one fee without a job."""
    clock = Clock(DAY1)
    ledger = Ledger(store, clock=clock)
    _job(store, "0x1:1", state="confirmed", prover="stone", at=DAY1)
    ledger.record(None, CostEntry("0x1:1", "trace", None, "ok", wall_s=2.0, cpu_s=2.0,
                                  n_steps=4096))
    ledger.record(None, CostEntry("0x1:1", "proof", "stone", "ok", wall_s=5.0, cpu_s=9.5,
                                  peak_rss_mb=156.0, proof_bytes=290_000, n_steps=4096))
    ledger.record(None, CostEntry("0x1:1", "fact_registration", None, "ok",
                                  fee_amount=45 * STRK // 10, fee_unit="FRI", tx_hash=0xF1))
    ledger.record(None, CostEntry("0x1:1", "execution", None, "ok",
                                  fee_amount=STRK // 2, fee_unit="FRI", tx_hash=0xE1))
    clock.now = DAY2
    _job(store, "0x1:2", state="confirmed", prover="atlantic", at=DAY2)
    ledger.record(None, CostEntry("0x1:2", "proof", "stone", "failed", reason="stone_timeout",
                                  wall_s=1.0, cpu_s=1.0, n_steps=4096))
    ledger.record(None, CostEntry("0x1:2", "proof", "atlantic", "ok", wall_s=100.0,
                                  atlantic_job_size="S", atlantic_price=2.5, proof_bytes=400_000,
                                  n_steps=4096))
    ledger.record(None, CostEntry("0x1:2", "fact_registration", None, "ok", fee_amount=3,
                                  fee_unit="FRI"))
    ledger.record(None, CostEntry("0x1:2", "execution", None, "ok", fee_amount=7,
                                  fee_unit="WEI"))
    _job(store, "0x1:3", state="proving", prover="dev", at=DAY2)
    ledger.record(None, CostEntry("0x1:3", "proof", "dev", "ok", wall_s=0.5,
                                  n_steps=40_000_000))
    ledger.record(None, CostEntry(None, "execution", None, "failed", reason="reverted",
                                  fee_amount=11, fee_unit="FRI"))


def test_report_totals_per_prover(store: Store) -> None:
    _seed(store)
    report = Ledger(store).report(None, atlantic_price_per_job_size=PRICES)
    assert set(report.by_prover) == {"stone", "atlantic", "dev", UNATTRIBUTED}
    stone = report.by_prover["stone"]
    assert (stone.rows, stone.failed) == (5, 1)
    assert stone.wall_s == pytest.approx(8.0)
    assert stone.cpu_s == pytest.approx(12.5)
    assert stone.fees == {"FRI": 5 * STRK}
    assert stone.atlantic_usd == 0
    assert stone.as_if_atlantic_usd == Decimal("2.5")
    atlantic = report.by_prover["atlantic"]
    assert (atlantic.rows, atlantic.failed) == (3, 0)
    assert atlantic.atlantic_usd == Decimal("2.5")
    assert atlantic.fees == {"FRI": 3, "WEI": 7}
    assert atlantic.as_if_atlantic_usd == Decimal("2.5")
    dev = report.by_prover["dev"]
    assert (dev.rows, dev.as_if_atlantic_usd, dev.as_if_unpriced) == (1, 0, {"L": 1})
    assert report.by_prover[UNATTRIBUTED].fees == {"FRI": 11}
    assert report.unconfigured_sizes == ("L",)


def test_report_totals_per_day_and_per_allocation(store: Store) -> None:
    _seed(store)
    report = Ledger(store).report(None, atlantic_price_per_job_size=PRICES)
    day1, day2 = report.by_day[date(2025, 3, 1)], report.by_day[date(2025, 3, 2)]
    assert (day1.rows, day1.executed, day1.fees) == (4, 1, {"FRI": 5 * STRK})
    assert (day2.rows, day2.executed, day2.fees) == (6, 1, {"FRI": 14, "WEI": 7})
    assert report.executed_allocations == 2
    executed_by_prover = {name: t.executed for name, t in report.by_prover.items()}
    assert executed_by_prover["stone"] == 1 and executed_by_prover["atlantic"] == 1
    total = report.total
    assert total.fees == {"FRI": 5 * STRK + 14, "WEI": 7}
    assert total.atlantic_usd == Decimal("2.5")
    assert total.as_if_atlantic_usd == Decimal("5.0")
    per = report.per_executed_allocation
    assert per is not None
    assert per.fees == {"FRI": (5 * STRK + 14) // 2, "WEI": 3}
    assert per.atlantic_usd == Decimal("1.25")
    assert per.as_if_atlantic_usd == Decimal("2.5")
    assert per.cpu_s == pytest.approx(12.5 / 2)
    assert per.wall_s == pytest.approx(108.5 / 2)


def test_report_since_keeps_only_that_period(store: Store) -> None:
    _seed(store)
    report = Ledger(store).report(date(2025, 3, 2), atlantic_price_per_job_size=PRICES)
    assert list(report.by_day) == [date(2025, 3, 2)]
    assert report.executed_allocations == 1
    assert report.total.rows == 6
    assert report.by_prover["stone"].rows == 1  # only the failed attempt of day 2
    assert report.total.fees == {"FRI": 14, "WEI": 7}


def test_confirmation_day_comes_from_the_transition(store: Store) -> None:
    _job(store, "0x1:9", state="confirmed", prover="stone", at=DAY2)
    with store.transaction() as db:
        db.conn.execute(
            "INSERT INTO job_transitions (job_id, from_state, to_state, at) "
            "VALUES ('0x1:9', 'submitted', 'confirmed', ?)",
            (DAY1.isoformat(),),
        )
    report = Ledger(store).report(None, atlantic_price_per_job_size=PRICES)
    assert report.by_day[date(2025, 3, 1)].executed == 1


def test_unpriced_proofs_are_named_not_invented(store: Store) -> None:
    ledger = Ledger(store, clock=Clock(DAY1))
    ledger.record(None, CostEntry(None, "proof", "stone", "ok", cpu_s=1.0))  # n_steps unknown
    ledger.record(None, CostEntry(None, "proof", "stone", "ok", n_steps=20_000_000))
    ledger.record(None, CostEntry(None, "proof", "atlantic", "ok", atlantic_job_size="S"))
    report = ledger.report(None, atlantic_price_per_job_size={})
    assert report.total.as_if_unpriced == {UNKNOWN_STEPS: 1, "M": 1, "S": 1}
    assert report.total.as_if_atlantic_usd == 0
    assert report.total.atlantic_unpriced == 1
    assert report.unconfigured_sizes == ("M", "S")
    assert report.per_executed_allocation is None


fee_rows = st.lists(
    st.tuples(
        st.sampled_from(["stone", "atlantic", "dev", None]),
        st.integers(min_value=0, max_value=2**160),
        st.sampled_from(["FRI", "WEI"]),
        st.sampled_from(["2025-03-01T10:00:00+00:00", "2025-03-02T23:59:59+00:00"]),
    ),
    max_size=30,
)


@given(rows=fee_rows)
def test_fee_totals_are_exact_and_partitioned(
    rows: list[tuple[str | None, int, str, str]],
) -> None:
    cost_rows = [
        {"kind": "execution", "outcome": "ok", "prover": prover, "job_prover": None,
         "wall_s": None, "cpu_s": None, "atlantic_price": None, "atlantic_job_size": None,
         "n_steps": None, "fee_amount": str(amount), "fee_unit": unit, "at": at}
        for prover, amount, unit, at in rows
    ]
    report = build_report(cost_rows, [], since=None, atlantic_price_per_job_size=PRICES)
    for unit in ("FRI", "WEI"):
        expected = sum(amount for _, amount, u, _ in rows if u == unit)
        assert report.total.fees.get(unit, 0) == expected
        assert sum(t.fees.get(unit, 0) for t in report.by_prover.values()) == expected
        assert sum(t.fees.get(unit, 0) for t in report.by_day.values()) == expected


# --- the command ---------------------------------------------------------------------


def _config(tmp_path: Path, store_path: Path, prices: str = "{ S = 2.5, M = 7.0 }") -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(
        "[chain]\n"
        'rpc_url = "http://127.0.0.1:5050"\n'
        'chain_id = "SN_SEPOLIA"\n'
        'router_address = "0x1"\n'
        'risk_engine_address = "0x2"\n'
        'account_address = "0x3"\n'
        "[prover]\n"
        f"atlantic_price_per_job_size = {prices}\n"
        "[store]\n"
        f'path = "{store_path}"\n'
    )
    return path


def test_costs_command_human_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        _seed(store)
    assert main(["costs", "--config", str(_config(tmp_path, store_path))]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "costs, all time (UTC days)"
    stone = next(line for line in lines if line.startswith("stone "))
    assert stone.split()[:6] == ["stone", "5", "1", "8.0", "12.5", "0.00"]
    assert "5 STRK" in stone
    dev = next(line for line in lines if line.startswith("dev "))
    assert "0.00*" in dev
    assert "executed allocations: 2" in lines
    per = next(line for line in lines if line.startswith("per executed allocation:"))
    assert "Atlantic USD 1.25" in per
    assert "2.500000000000000007 STRK" in per  # (5 STRK + 14 FRI) // 2, exact
    assert "as if every proof had gone to Atlantic: USD 2.50" in per
    assert any("L (1 proof)" in line and "price not configured" in line for line in lines)


def test_costs_command_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        _seed(store)
    config = str(_config(tmp_path, store_path))
    assert main(["costs", "--config", config, "--json", "--since", "2025-03-02"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["since"] == "2025-03-02"
    assert data["executed_allocations"] == 1
    assert data["total"]["fees"] == {"FRI": "14", "WEI": "7"}
    assert data["by_prover"]["atlantic"]["atlantic_usd"] == "2.5"
    assert data["by_prover"]["dev"]["as_if_atlantic_unpriced"] == {"L": 1}
    assert data["per_executed_allocation"]["fees"] == {"FRI": "14", "WEI": "7"}
    assert data["price_not_configured"] == ["L"]


def test_costs_command_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_path = tmp_path / "nowhere" / "keeper.sqlite3"
    assert main(["costs", "--config", str(_config(tmp_path, store_path))]) == 1
    err = capsys.readouterr().err
    assert f"no store at {store_path} yet (the keeper has not run" in err
    assert not store_path.exists()


@pytest.mark.parametrize("since", ["2025-13-01", "yesterday", "01/03/2025"])
def test_costs_command_bad_since_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], since: str
) -> None:
    config = str(_config(tmp_path, tmp_path / "k.sqlite3"))
    with pytest.raises(SystemExit) as info:
        main(["costs", "--config", config, "--since", since])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "YYYY-MM-DD" in err


def test_costs_command_on_an_empty_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    open_store(store_path).close()
    assert main(["costs", "--config", str(_config(tmp_path, store_path, "{}"))]) == 0
    assert capsys.readouterr().out == "costs, all time (UTC days)\nno costs recorded\n"


# --- medians ---------------------------------------------------------------------------


@given(st.lists(st.integers(min_value=0, max_value=2**200), min_size=1, max_size=25))
def test_median_fee_is_the_exact_median_rounded_down(amounts: list[int]) -> None:
    exact = statistics.median([Fraction(a) for a in amounts])
    assert median_fee(amounts) == exact // 1
    assert isinstance(median_fee(amounts), int)
    assert min(amounts) <= median_fee(amounts) <= max(amounts)


def test_median_fee_of_an_even_count_is_the_floor_of_the_midpoint() -> None:
    assert median_fee([1, 2]) == 1
    assert median_fee([4 * STRK, STRK + 1, 3, 2**100]) == (STRK + 1 + 4 * STRK) // 2
    with pytest.raises(ValueError, match="no fees"):
        median_fee([])


def test_median_fees_count_a_missing_unit_as_nothing_paid_in_it() -> None:
    assert median_fees([{"FRI": 5}, {"FRI": 7, "WEI": 9}, {}]) == {"FRI": 5, "WEI": 0}
    assert median_fees([]) == {}


# --- executed allocations, pure ----------------------------------------------------------

JOBS = (
    ConfirmedJob("0x1:1", 1, "stone", "interval", 4096, DAY1),
    ConfirmedJob("0x1:2", 2, "atlantic", "drift", None, DAY2),
)


def _row(job_id: str | None, kind: str, **fields: Any) -> dict[str, Any]:
    """A ``costs`` row as the store returns it (fees as TEXT)."""
    row: dict[str, Any] = {
        "job_id": job_id, "kind": kind, "prover": None, "outcome": "ok", "cpu_s": None,
        "n_steps": None, "atlantic_job_size": None, "atlantic_price": None,
        "fee_amount": None, "fee_unit": None,
    }
    row.update(fields)
    if row["fee_amount"] is not None:
        row["fee_amount"] = str(row["fee_amount"])
    return row


cost_row = st.tuples(
    st.sampled_from(["0x1:1", "0x1:2", "0x1:99", None]),  # 0x1:99: not executed
    st.sampled_from(["trace", "proof", "fact_registration", "execution"]),
    st.one_of(st.none(), st.floats(min_value=0, max_value=1e5, allow_nan=False)),
    st.integers(min_value=0, max_value=2**160),
    st.sampled_from(["FRI", "WEI"]),
    st.sampled_from(["ok", "failed"]),
)


@given(rows=st.lists(cost_row, max_size=40))
def test_each_allocation_adds_up_exactly_what_its_job_paid(
    rows: list[tuple[str | None, str, float | None, int, str, str]],
) -> None:
    cost_rows = [
        _row(job, kind, cpu_s=cpu, outcome=outcome,
             **({"fee_amount": fee, "fee_unit": unit} if kind in ("fact_registration",
                                                                  "execution") else {}))
        for job, kind, cpu, fee, unit, outcome in rows
    ]
    allocations = allocation_costs(JOBS, cost_rows, atlantic_price_per_job_size=PRICES)
    assert [a.job_id for a in allocations] == ["0x1:1", "0x1:2"]
    for allocation in allocations:
        mine = [r for r in rows if r[0] == allocation.job_id]
        for kind, fees, txs in (
            ("fact_registration", allocation.verification_fees, allocation.verification_txs),
            ("execution", allocation.execution_fees, allocation.execution_txs),
        ):
            assert txs == sum(1 for r in mine if r[1] == kind)
            for unit in ("FRI", "WEI"):
                paid = [r[3] for r in mine if r[1] == kind and r[4] == unit]
                assert fees.get(unit) == (sum(paid) if paid else None)
        proof_cpu = [r[2] for r in mine if r[1] == "proof" and r[2] is not None]
        trace_cpu = sum(r[2] or 0.0 for r in mine if r[1] == "trace")
        assert allocation.proof_cpu_s == (pytest.approx(sum(proof_cpu)) if proof_cpu else None)
        assert allocation.cpu_s == pytest.approx(trace_cpu + sum(proof_cpu))


def test_an_allocation_is_priced_as_atlantic_by_its_size() -> None:
    rows = [
        _row("0x1:2", "trace", n_steps=20_000_000),  # the job's column is unset: rows say M
        _row("0x1:2", "proof", prover="atlantic", outcome="failed", atlantic_job_size="L"),
    ]
    stone, atlantic = allocation_costs(JOBS, rows, atlantic_price_per_job_size=PRICES)
    assert (stone.n_steps, stone.atlantic_job_size, stone.atlantic_usd) == (
        4096, "S", Decimal("2.5"),
    )
    assert (atlantic.n_steps, atlantic.atlantic_job_size, atlantic.atlantic_usd) == (
        20_000_000, "M", Decimal("7.0"),
    )
    # An Atlantic proof is priced at the size it was declared with.
    declared = [*rows, _row("0x1:2", "proof", prover="atlantic", atlantic_job_size="S")]
    _, atlantic = allocation_costs(JOBS, declared, atlantic_price_per_job_size=PRICES)
    assert (atlantic.atlantic_job_size, atlantic.atlantic_usd) == ("S", Decimal("2.5"))


def test_an_allocation_that_cannot_be_priced_says_why() -> None:
    stone, atlantic = allocation_costs(JOBS, [], atlantic_price_per_job_size={"M": 7})
    assert (stone.atlantic_usd, stone.atlantic_unpriced) == (None, "S")
    assert (atlantic.atlantic_job_size, atlantic.atlantic_usd) == (None, None)
    assert atlantic.atlantic_unpriced == UNKNOWN_STEPS


def test_the_job_size_function_is_the_callers() -> None:
    (stone, _) = allocation_costs(
        JOBS, [], atlantic_price_per_job_size=PRICES, job_size_for_n_steps=lambda _: "M"
    )
    assert (stone.atlantic_job_size, stone.atlantic_usd) == ("M", Decimal("7.0"))


allocation = st.builds(
    lambda prover, cpu, vfees, txs, efees, price: AllocationCost(
        job_id="j", epoch=1, prover=prover, trigger="interval", confirmed_at=DAY1,
        n_steps=4096, trace_cpu_s=1.0, proof_cpu_s=cpu, verification_fees=vfees,
        verification_txs=txs, execution_fees=efees, execution_txs=1,
        atlantic_job_size="S", atlantic_usd=price, atlantic_unpriced=None if price else "S",
    ),
    st.sampled_from(["stone", "atlantic"]),
    st.one_of(st.none(), st.floats(min_value=0, max_value=1e5, allow_nan=False)),
    st.dictionaries(st.sampled_from(["FRI", "WEI"]), st.integers(0, 2**128), max_size=2),
    st.integers(0, 5),
    st.dictionaries(st.just("FRI"), st.integers(0, 2**128), max_size=1),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=2)),
)


@given(st.lists(allocation, max_size=20))
def test_per_prover_totals_and_medians(allocations: list[AllocationCost]) -> None:
    summaries = summarize_allocations(allocations)
    assert set(summaries) == {a.prover for a in allocations}
    for prover, summary in summaries.items():
        mine = [a for a in allocations if a.prover == prover]
        assert summary.allocations == len(mine)
        assert summary.verification_txs == sum(a.verification_txs for a in mine)
        for unit in ("FRI", "WEI"):
            paid = [a.verification_fees.get(unit, 0) for a in mine]
            if any(unit in a.verification_fees for a in mine):
                assert summary.verification_fees[unit] == sum(paid)
                assert summary.verification_fees_median[unit] == median_fee(paid)
            else:
                assert unit not in summary.verification_fees
        assert summary.execution_fees == {
            unit: sum(a.execution_fees.get(unit, 0) for a in mine)
            for unit in {u for a in mine for u in a.execution_fees}
        }
        assert summary.cpu_s_median == statistics.median(a.cpu_s for a in mine)
        priced = [a.atlantic_usd for a in mine if a.atlantic_usd is not None]
        assert summary.atlantic_usd == sum(priced, Decimal(0))
        assert summary.atlantic_usd_median == (statistics.median(priced) if priced else None)
        assert summary.atlantic_unpriced == len(mine) - len(priced)
        json.dumps(summary.as_json())  # fees and USD as strings: serialisable, exact


# --- executed allocations in the store, as the daemon writes them ----------------------------


class Daemon:
    """Writes what keeper.engine.worker writes: jobs moved by JobStore; cost rows in the
    shapes of its _trace, on_proof_attempt and _record_fee."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.clock = clock
        self.jobs = JobStore(store, clock)
        self.ledger = Ledger(store, clock=clock)

    def detected(self, epoch: int, trigger: str = "interval") -> Job:
        job = self.jobs.create(0x1, epoch, trigger)
        assert job is not None
        return job

    def traced(self, job: Job, *, n_steps: int, cpu_s: float) -> Job:
        self.ledger.record(None, CostEntry(job.id, "trace", None, "ok", wall_s=cpu_s,
                                           cpu_s=cpu_s, n_steps=n_steps))
        return self.jobs.advance(self.jobs.advance(job, JobState.TRACED, n_steps=n_steps),
                                 JobState.PROVING)

    def proof_attempt(self, job: Job, prover: str, outcome: str, *, cpu_s: float | None = None,
                      price: float | None = None, reason: str | None = None) -> None:
        self.ledger.record(None, CostEntry(
            job_id=job.id, kind="proof", prover=prover,
            outcome="ok" if outcome == "ok" else "failed",
            reason=reason if outcome != "skipped" else f"skipped: {reason}",
            wall_s=cpu_s or 1.0, cpu_s=cpu_s if prover == "stone" else None,
            proof_bytes=290_000 if outcome == "ok" else None, n_steps=job.n_steps,
            atlantic_price=price,
        ))

    def proved(self, job: Job, prover: str) -> Job:
        return self.jobs.advance(job, JobState.PROVED, prover=prover)

    def fee(self, job: Job, kind: Any, amount: int, tx: int, *, revert: str | None = None) -> None:
        self.ledger.record(None, CostEntry(
            job_id=job.id, kind=kind, prover=job.prover,
            outcome="ok" if revert is None else "failed", reason=revert,
            fee_amount=amount, fee_unit="FRI", tx_hash=tx,
        ))

    def confirmed(self, job: Job) -> Job:
        job = self.jobs.advance(job, JobState.FACT_REGISTERED)
        job = self.jobs.advance(job, JobState.SUBMITTED, submit_tx_hash=hex(0xE0 + job.epoch))
        return self.jobs.advance(job, JobState.CONFIRMED, detail="block 7")


HUGE = 2**100 + 3  # a fee past 64 bits, to see it stay exact


def _daemon_seed(store: Store, start: datetime = DAY1) -> Clock:
    """Epoch 10: Stone + Integrity (3 registration txs, one reverted), day 1.
    Epoch 11: traced on day 1, Stone timed out, Atlantic proved; confirmed on day 2.
    Epoch 12: proved, not executed. Epoch 13: its execution reverted: failed."""
    clock = Clock(start)
    daemon = Daemon(store, clock)
    job = daemon.traced(daemon.detected(10), n_steps=4096, cpu_s=2.0)
    daemon.proof_attempt(job, "stone", "ok", cpu_s=40.5)
    job = daemon.proved(job, "stone")
    daemon.fee(job, "fact_registration", 3 * STRK // 10, 0xF1)
    daemon.fee(job, "fact_registration", STRK, 0xF2, revert="Out of gas")
    daemon.fee(job, "fact_registration", HUGE, 0xF3)
    clock.now += timedelta(minutes=5)
    daemon.fee(job, "execution", STRK // 2, 0xE1)
    daemon.confirmed(job)
    clock.now += timedelta(hours=11, minutes=50)  # 23:55
    job = daemon.traced(daemon.detected(11, "drift"), n_steps=20_000_000, cpu_s=3.0)
    daemon.proof_attempt(job, "stone", "failed", reason="stone_timeout")
    clock.now += timedelta(hours=1)  # day 2
    daemon.proof_attempt(job, "atlantic", "ok", price=7.0)
    job = daemon.proved(job, "atlantic")
    daemon.fee(job, "execution", 6 * STRK // 10, 0xE2)
    daemon.confirmed(job)
    open_job = daemon.traced(daemon.detected(12), n_steps=4096, cpu_s=2.0)
    daemon.proof_attempt(open_job, "stone", "ok", cpu_s=41.0)
    daemon.proved(open_job, "stone")
    failed = daemon.proved(daemon.traced(daemon.detected(13), n_steps=4096, cpu_s=2.0), "stone")
    daemon.fee(failed, "execution", 5, 0xE3, revert="stale inputs commitment")
    daemon.jobs.fail(daemon.jobs.advance(failed, JobState.FACT_REGISTERED), "reverted",
                     "stale inputs commitment", retry_after=None, paid=True)
    return clock


def test_executed_allocations_are_the_confirmed_jobs_with_all_they_cost(store: Store) -> None:
    _daemon_seed(store)
    stone, atlantic = Ledger(store).executed_allocations(
        confirmed_since=None, atlantic_price_per_job_size=PRICES
    )
    assert (stone.job_id, stone.epoch, stone.prover, stone.trigger) == (
        "0x1:10", 10, "stone", "interval",
    )
    assert stone.confirmed_at == DAY1 + timedelta(minutes=5)
    assert (stone.trace_cpu_s, stone.proof_cpu_s, stone.cpu_s) == (2.0, 40.5, 42.5)
    assert stone.verification_fees == {"FRI": 3 * STRK // 10 + STRK + HUGE}
    assert stone.verification_txs == 3
    assert (stone.execution_fees, stone.execution_txs) == ({"FRI": STRK // 2}, 1)
    assert (stone.atlantic_job_size, stone.atlantic_usd) == ("S", Decimal("2.5"))
    assert (atlantic.job_id, atlantic.trigger, atlantic.n_steps) == ("0x1:11", "drift", 20_000_000)
    assert atlantic.proof_cpu_s is None  # the timed-out Stone run recorded no CPU
    assert (atlantic.cpu_s, atlantic.verification_fees, atlantic.verification_txs) == (3.0, {}, 0)
    assert atlantic.execution_fees == {"FRI": 6 * STRK // 10}
    assert (atlantic.atlantic_job_size, atlantic.atlantic_usd) == ("M", Decimal("7.0"))


def test_executed_allocations_since_a_moment(store: Store) -> None:
    _daemon_seed(store)
    ledger = Ledger(store)
    later = ledger.executed_allocations(
        confirmed_since=DAY1 + timedelta(minutes=6), atlantic_price_per_job_size=PRICES
    )
    assert [a.epoch for a in later] == [11]
    with pytest.raises(ValueError, match="time zone"):
        ledger.executed_allocations(
            confirmed_since=datetime(2025, 3, 1), atlantic_price_per_job_size=PRICES
        )
    assert Ledger(store).executed_allocations(
        confirmed_since=DAY2 + timedelta(days=1), atlantic_price_per_job_size=PRICES
    ) == []


def test_report_since_costs_an_allocation_with_rows_from_before(store: Store) -> None:
    _daemon_seed(store)
    report = Ledger(store).report(date(2025, 3, 2), atlantic_price_per_job_size=PRICES)
    (only,) = report.allocations
    assert only.epoch == 11
    assert only.trace_cpu_s == 3.0  # traced on day 1, executed on day 2
    assert report.by_prover["atlantic"].cpu_s == 0.0  # the period's rows: day 2 only
    assert set(report.allocations_by_prover) == {"atlantic"}


def test_report_summarises_allocations_per_prover(store: Store) -> None:
    _daemon_seed(store)
    report = Ledger(store).report(None, atlantic_price_per_job_size=PRICES)
    assert [a.epoch for a in report.allocations] == [10, 11]
    stone = report.allocations_by_prover["stone"]
    assert (stone.allocations, stone.verification_txs) == (1, 3)
    assert stone.verification_fees == stone.verification_fees_median == {
        "FRI": 13 * STRK // 10 + HUGE
    }
    assert report.executed_allocations == 2  # the counts agree with the allocations


# --- the command: executed allocations ------------------------------------------------------


def _cheapest_config(tmp_path: Path, store_path: Path, extra: str) -> Path:
    path = _config(tmp_path, store_path)
    path.write_text(path.read_text().replace("[prover]\n", f"[prover]\n{extra}"))
    return path


def test_costs_command_lists_each_executed_allocation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        _daemon_seed(store)
    assert main(["costs", "--config", str(_config(tmp_path, store_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("executed allocations, oldest first")
    header, first, second = lines[at + 1 : at + 4]
    assert header.split("  ")[0] == "epoch"
    huge_total = format_fee(13 * STRK // 10 + HUGE, "FRI")
    assert first.split() == [
        "10", "stone", "interval", "2025-03-01", "12:05", "4096", "42.5",
        *huge_total.split(), "3", "0.5", "STRK", "2.50", "(S)",
    ]
    assert second.split() == [
        "11", "atlantic", "drift", "2025-03-02", "00:55", "20000000", "3.0", "0", "0",
        "0.6", "STRK", "7.00", "(M)",
    ]
    at = lines.index("executed allocations per prover")
    summary = {line.split()[0]: line for line in lines[at + 2 : at + 4]}
    assert summary["stone"].split()[:4] == ["stone", "1", "42.5", "/"]
    assert f"{huge_total} / {huge_total}" in summary["stone"]
    assert "7.00 / 7.00" in summary["atlantic"]
    assert not any(line.startswith("cheapest policy") for line in lines)  # not configured


def test_costs_command_lists_the_last_allocations_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        _daemon_seed(store)
    config = str(_config(tmp_path, store_path))
    assert main(["costs", "--config", config, "--last", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("executed allocations, oldest first (the last 1 of 2; --json lists all)")
    assert lines[at + 2].split()[0] == "11"
    assert lines[at + 3] == ""


def test_costs_command_json_has_the_allocations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        _daemon_seed(store)
    assert main(["costs", "--config", str(_config(tmp_path, store_path)), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    first, second = data["allocations"]
    assert first == {
        "job_id": "0x1:10", "epoch": 10, "prover": "stone", "trigger": "interval",
        "confirmed_at": "2025-03-01T12:05:00+00:00", "n_steps": 4096,
        "cpu_s": 42.5, "trace_cpu_s": 2.0, "proof_cpu_s": 40.5,
        "verification_fees": {"FRI": str(13 * STRK // 10 + HUGE)}, "verification_txs": 3,
        "execution_fees": {"FRI": str(STRK // 2)}, "execution_txs": 1,
        "atlantic_job_size": "S", "atlantic_usd": "2.5", "atlantic_unpriced": None,
    }
    assert (second["epoch"], second["proof_cpu_s"], second["atlantic_usd"]) == (11, None, "7.0")
    by_prover = data["allocations_by_prover"]
    assert by_prover["stone"]["verification_fees_median"] == {"FRI": str(13 * STRK // 10 + HUGE)}
    assert by_prover["atlantic"]["execution_fees"] == {"FRI": str(6 * STRK // 10)}
    assert data["cheapest_next"] is None
    assert data["executed_allocations"] == 2  # the existing parts are still there
    assert data["by_prover"]["stone"]["executed_allocations"] == 1


def test_costs_command_says_what_cheapest_would_choose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Seeded from a day ago, so its figures are recent. Stone's cost: 40.5 s of CPU at
    # USD 0 plus 1.3 STRK + HUGE FRI at USD 0.5, far above Atlantic's USD 7 for size M
    # (the size of the last executed job, epoch 11).
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        _daemon_seed(store, datetime.now(UTC) - timedelta(days=1))
    config = _cheapest_config(tmp_path, store_path, 'policy = "cheapest"\nstrk_usd = 0.5\n')
    assert main(["costs", "--config", str(config), "--json"]) == 0
    cheapest = json.loads(capsys.readouterr().out)["cheapest_next"]
    assert (cheapest["n_steps"], cheapest["prover"], cheapest["policy"]) == (
        20_000_000, "atlantic", "atlantic_only",
    )
    assert cheapest["atlantic_usd"] == "7"
    assert cheapest["reason"].startswith("Atlantic USD 7 (job size M) < Stone+Integrity USD")
    assert main(["costs", "--config", str(config)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(
        "cheapest policy, next job (20000000 steps, like the last one): atlantic_only: "
    )


def test_costs_command_says_when_cheapest_cannot_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        _daemon_seed(store)
    config = _cheapest_config(tmp_path, store_path, 'policy = "cheapest"\n')
    assert main(["costs", "--config", str(config)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(
        "cheapest policy, next job (20000000 steps, like the last one): stone_then_atlantic: "
        "cannot compare costs: prover.strk_usd is not set"
    )


def test_render_lists_all_allocations_when_asked(store: Store) -> None:
    _daemon_seed(store)
    report = Ledger(store).report(None, atlantic_price_per_job_size={})
    lines = render(report, listed=0)
    at = lines.index("executed allocations, oldest first")
    assert [line.split()[0] for line in lines[at + 2 : at + 4]] == ["10", "11"]
    assert lines[at + 2].endswith("- (S: no price)")


def test_recent_proof_seconds_is_the_median_of_the_last_successful_proofs(store: Store) -> None:
    ledger = Ledger(store)
    assert ledger.recent_proof_seconds("stone", 4096) is None
    for wall in (100.0, 70.0, 74.0, 76.0, 75.0, 300.0):
        ledger.record(None, CostEntry(None, "proof", "stone", "ok", wall_s=wall, n_steps=4096))
    ledger.record(None, CostEntry(None, "proof", "stone", "failed", wall_s=2.0, n_steps=4096))
    ledger.record(None, CostEntry(None, "proof", "stone", "ok", wall_s=9.0, n_steps=1024))
    ledger.record(None, CostEntry(None, "proof", "atlantic", "ok", wall_s=900.0, n_steps=4096))
    # The last five Stone proofs of 4,096 steps: 70, 74, 76, 75, 300 -> 75.
    assert ledger.recent_proof_seconds("stone", 4096) == 75.0
    assert ledger.recent_proof_seconds("stone", 1024) == 9.0
    assert ledger.recent_proof_seconds("stone", None) == 75.0  # 9, 300, 75, 76, 74
    assert ledger.recent_proof_seconds("atlantic", 4096) == 900.0
