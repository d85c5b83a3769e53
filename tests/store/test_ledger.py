"""keeper.store.ledger and ``obsqra-keeper costs``: cost rows in, exact totals out."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.cli.main import main
from keeper.store.cost_table import format_fee
from keeper.store.db import Store, open_store
from keeper.store.ledger import (
    UNATTRIBUTED,
    UNKNOWN_STEPS,
    CostEntry,
    Ledger,
    atlantic_job_size,
    build_report,
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


# --- job sizes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_steps", "size"),
    [(0, "S"), (4096, "S"), (12_999_999, "S"), (13_000_000, "M"), (29_999_999, "M"),
     (30_000_000, "L"), (2**40, "L")],
)
def test_atlantic_job_size_follows_the_documented_table(n_steps: int, size: str) -> None:
    assert atlantic_job_size(n_steps) == size


@given(a=st.integers(min_value=0, max_value=2**40), b=st.integers(min_value=0, max_value=2**40))
def test_atlantic_job_size_grows_with_the_trace(a: int, b: int) -> None:
    order = ["XS", "S", "M", "L"]
    small, large = sorted((a, b))
    assert order.index(atlantic_job_size(small)) <= order.index(atlantic_job_size(large))


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_atlantic_job_size_refuses_non_step_counts(bad: Any) -> None:
    with pytest.raises(ValueError, match="n_steps must be a non-negative integer"):
        atlantic_job_size(bad)


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
