"""keeper.store.governance and ``obsqra-keeper governance``: the governance history in the
store (parameter values and the router's timelocked proposals)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.codec import encode_short_string
from keeper.cli.main import main
from keeper.store.db import Store, open_store
from keeper.store.governance import (
    GovernanceTracker,
    format_proposal_values,
    format_value,
    model_params_changes,
    model_params_values,
)
from prover.model import ModelParams
from tests.support.governance import DIRECT_PIN, make_governance

BIG = 2**251 + 17 * 2**192  # the largest felt: hashes must survive the TEXT round trip
ROUTER_PARAMS = make_governance(
    max_single_bps=6000, program_hash=BIG, child_program_hash=0xC4A1
).as_dict()
N_PARAMS = 18
HOUR = 3600


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "keeper.sqlite3") as s:
        yield s


def test_first_start_records_every_param(store: Store) -> None:
    tracker = GovernanceTracker(store)
    assert tracker.record_initial("router", ROUTER_PARAMS, block_number=10) == N_PARAMS
    rows = tracker.changes()
    assert [r["param"] for r in rows] == list(ROUTER_PARAMS)
    assert all(r["old"] is None and r["tx_hash"] is None and r["block_number"] == 10 for r in rows)
    assert tracker.latest("router") == ROUTER_PARAMS
    assert {r["param"]: r["new"] for r in rows}["program_hash"] == BIG


def test_restart_with_same_values_adds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keeper.sqlite3"
    with open_store(path) as store:
        GovernanceTracker(store).record_initial("router", ROUTER_PARAMS, block_number=10)
    with open_store(path) as store:
        tracker = GovernanceTracker(store)
        assert tracker.record_initial("router", ROUTER_PARAMS, block_number=20) == 0
        changed = {**ROUTER_PARAMS, "drift_threshold_bps": 300}
        assert tracker.record_initial("router", changed, block_number=30) == 1
        last = tracker.changes()[-1]
    assert (last["param"], last["old"], last["new"], last["block_number"]) == (
        "drift_threshold_bps", 500, 300, 30
    )


@settings(max_examples=25, deadline=None)
@given(
    snapshots=st.lists(
        st.fixed_dictionaries(
            {"w_util": st.integers(0, 3), "risk_floor": st.integers(0, 3)}
        ),
        min_size=1,
        max_size=6,
    )
)
def test_rows_are_exactly_the_changes_between_snapshots(snapshots: list[dict[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "k.sqlite3") as store:
        tracker = GovernanceTracker(store)
        for block, snap in enumerate(snapshots):
            tracker.record_initial("risk_engine", snap, block_number=block)
        previous: dict[str, int] = {}
        expected = 0
        for snap in snapshots:
            expected += sum(1 for k, v in snap.items() if previous.get(k) != v)
            previous = snap
        assert len(tracker.changes()) == expected
        assert tracker.latest("risk_engine") == snapshots[-1]


def test_events_are_recorded_in_the_callers_transaction_once(store: Store) -> None:
    tracker = GovernanceTracker(store)
    tracker.record_initial("router", ROUTER_PARAMS, block_number=10)
    with store.transaction() as db:
        assert tracker.apply_event(db, "router", "program_hash", BIG, 0x777, 12, 0xABC, 41)
        assert not tracker.apply_event(db, "router", "program_hash", BIG, 0x777, 12, 0xABC, 41)
    with store.transaction() as db:  # a replay after restart
        assert not tracker.apply_event(db, "router", "program_hash", BIG, 0x777, 12, 0xABC, 41)
    events = [r for r in tracker.changes() if r["event_id"] is not None]
    assert len(events) == 1
    assert (events[0]["old"], events[0]["new"], events[0]["tx_hash"]) == (BIG, 0x777, 0xABC)
    assert tracker.latest("router")["program_hash"] == 0x777


def test_event_rolled_back_with_the_callers_transaction(store: Store) -> None:
    tracker = GovernanceTracker(store)
    with pytest.raises(RuntimeError, match="consumer failed"), store.transaction() as db:
        tracker.apply_event(db, "router", "max_single_bps", 6000, 5000, 12, 0xABC, 41)
        raise RuntimeError("consumer failed")
    assert tracker.changes() == []


def test_model_params_event_becomes_one_row_per_changed_param(store: Store) -> None:
    old = ModelParams()
    new = ModelParams(w_util=30, risk_ceiling=90)
    changes = model_params_changes(old, new)
    assert changes == [("w_util", 25, 30), ("risk_ceiling", 95, 90)]
    tracker = GovernanceTracker(store)
    tracker.record_initial("risk_engine", model_params_values(old), block_number=1)
    with store.transaction() as db:
        for param, before, after in changes:
            assert tracker.apply_event(db, "risk_engine", param, before, after, 5, 0xE1, 77)
    assert tracker.latest("risk_engine") == model_params_values(new)


def test_stream_rollback_forgets_rows_of_undone_blocks(store: Store) -> None:
    tracker = GovernanceTracker(store)
    tracker.record_initial("router", ROUTER_PARAMS, block_number=10)
    with store.transaction() as db:
        tracker.apply_event(db, "router", "max_single_bps", 6000, 5000, 12, 0xABC, 41)
        tracker.apply_event(db, "router", "max_single_bps", 5000, 4000, 15, 0xABD, 42)
    with store.transaction() as db:
        tracker.on_stream_rollback(db, 12)
    assert tracker.latest("router")["max_single_bps"] == 5000
    assert [r["event_id"] for r in tracker.changes() if r["event_id"]] == [41]


@pytest.mark.parametrize(
    ("contract", "param", "value", "message"),
    [
        ("vault", "x", 1, "unknown contract kind 'vault'"),
        ("router", "x", -1, "must be a non-negative integer"),
        ("router", "", 1, "name is empty"),
    ],
)
def test_bad_values_are_refused(
    store: Store, contract: str, param: str, value: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        GovernanceTracker(store).record_initial(contract, {param: value}, block_number=1)
    assert store.query("SELECT COUNT(*) AS n FROM governance_changes")[0]["n"] == 0


def test_changes_since_filters_by_recording_day(store: Store) -> None:
    clock = Clock(datetime(2025, 3, 1, 23, 59, tzinfo=UTC))
    tracker = GovernanceTracker(store, clock=clock)
    tracker.record_initial("router", {"max_single_bps": 6000}, block_number=1)
    clock.now = datetime(2025, 3, 2, 0, 1, tzinfo=UTC)
    tracker.record_initial("router", {"max_single_bps": 5000}, block_number=2)
    assert [r["new"] for r in tracker.changes(since=date(2025, 3, 2))] == [5000]
    assert len(tracker.changes(since=date(2025, 3, 1))) == 2


# --- the command ---------------------------------------------------------------------


def _config(tmp_path: Path, store_path: Path) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(
        "[chain]\n"
        'rpc_url = "http://127.0.0.1:5050"\n'
        'chain_id = "SN_SEPOLIA"\n'
        'router_address = "0x1"\n'
        'risk_engine_address = "0x2"\n'
        'account_address = "0x3"\n'
        "[store]\n"
        f'path = "{store_path}"\n'
    )
    return path


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("KEEPER_") or key == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(key)


def test_command_without_a_store_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "state" / "keeper.sqlite3"
    code = main(["governance", "--config", str(_config(tmp_path, store_path))])
    assert code == 1
    err = capsys.readouterr().err
    assert f"no store at {store_path} yet (the keeper has not run" in err
    assert len(err.strip().splitlines()) == 1
    assert not store_path.exists()
    assert not store_path.parent.exists()


def test_command_lists_rows_with_hex_hashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        tracker = GovernanceTracker(store)
        tracker.record_initial("router", ROUTER_PARAMS, block_number=10)
        with store.transaction() as db:
            tracker.apply_event(db, "router", "program_hash", BIG, 0x777, 12, 0xABC, 41)
            tracker.apply_event(db, "router", "max_single_bps", 6000, 5000, 12, 0xABC, 42)
    config = str(_config(tmp_path, store_path))
    assert main(["governance", "--config", config]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "parameter history:"  # no proposals recorded: no proposal sections
    assert lines[1].split() == ["block", "tx", "contract", "param", "old", "new"]
    assert len(lines) == 2 + N_PARAMS + 2
    assert lines[-2].split() == ["12", "0xabc", "router", "program_hash", hex(BIG), "0x777"]
    assert lines[-1].split() == ["12", "0xabc", "router", "max_single_bps", "6000", "5000"]
    assert "(read at start)" in lines[2]
    pins = {line.split()[-2]: line.split()[-1] for line in lines if "direct_" in line}
    assert pins == {
        "direct_layout": "small",
        "direct_hasher": "keccak_160_lsb",
        "direct_stone_version": "stone6",
        "direct_memory_verification": "strict",
    }

    assert main(["governance", "--config", config, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["pending"], shown["proposals"]) == ([], [])
    rows = shown["history"]
    assert rows[-2] | {"at": None} == {
        "block": 12, "tx": "0xabc", "contract": "router", "param": "program_hash",
        "old": hex(BIG), "new": "0x777", "event_id": 41, "at": None,
    }
    assert rows[0]["old"] is None and rows[0]["tx"] is None


def test_command_bad_since_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_config(tmp_path, tmp_path / "k.sqlite3"))
    with pytest.raises(SystemExit) as info:
        main(["governance", "--config", config, "--since", "last week"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "YYYY-MM-DD" in err


def test_command_since_a_future_day_lists_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        GovernanceTracker(store).record_initial("router", ROUTER_PARAMS, block_number=10)
    config = str(_config(tmp_path, store_path))
    assert main(["governance", "--config", config, "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out == "no governance changes recorded since 2999-01-01\n"


# --- the router's proposals ------------------------------------------------------------------


def _propose(
    tracker: GovernanceTracker, store: Store, *rows: tuple[object, ...], contract: str = "router"
) -> None:
    with store.transaction() as db:
        for status, param, subject, values, eta, block, event_id in rows:
            tracker.apply_proposal_event(
                db, status, param, subject, values, eta, block, 0xE0 + event_id, event_id,
                contract=contract,
            )


def test_risk_engine_proposals_are_followed_apart_from_the_routers(store: Store) -> None:
    tracker = GovernanceTracker(store)
    model = (25, 90, 0, 5, 15, 30, 3, 10, 730, 10, 5, 95)
    _propose(tracker, store, ("proposed", "governance_delay_s", 0, (7200,), HOUR, 10, 1))
    _propose(
        tracker,
        store,
        ("proposed", "governance_delay_s", 0, (0,), 2 * HOUR, 10, 2),
        ("proposed", "model_params", 0, model, 3 * HOUR, 10, 3),
        ("proposed", "oracle", 0, (0x0AC1E,), 3 * HOUR, 10, 4),
        ("applied", "oracle", 0, (0x0AC1E,), 3 * HOUR, 12, 5),
        contract="risk_engine",
    )
    pending = tracker.pending_proposals()
    assert [(p["contract"], p["param"], p["values"]) for p in pending] == [
        ("router", "governance_delay_s", [7200]),
        ("risk_engine", "governance_delay_s", [0]),  # same name, the other contract's
        ("risk_engine", "model_params", list(model)),
    ]
    with store.transaction() as db:
        tracker.on_stream_rollback(db, 11)  # the oracle's apply is undone: pending again
    assert [p["param"] for p in tracker.pending_proposals()][-1] == "oracle"
    with pytest.raises(ValueError, match="unknown contract kind"), store.transaction() as db:
        tracker.apply_proposal_event(db, "proposed", "oracle", 0, (1,), 1, 1, 1, 9, "vault")
    assert format_proposal_values("model_params", model).startswith("w_util=25, w_vol=90, ")
    assert format_proposal_values("oracle", [0x0AC1E]) == "0xac1e"


def test_pending_is_the_latest_state_of_each_change(store: Store) -> None:
    tracker = GovernanceTracker(store)
    pin = tuple(DIRECT_PIN.felts())
    _propose(
        tracker,
        store,
        ("proposed", "max_single_bps", 0, (6000,), 5 * HOUR, 10, 1),
        ("proposed", "direct_verifier", 0, pin, 2 * HOUR, 10, 2),
        ("proposed", "keeper", 0xA11CE, (0,), 3 * HOUR, 11, 3),
        ("applied", "keeper", 0xA11CE, (0,), 3 * HOUR, 12, 4),
        ("proposed", "min_diversification", 0, (3,), 4 * HOUR, 12, 5),
        ("cancelled", "min_diversification", 0, (3,), 4 * HOUR, 13, 6),
        ("proposed", "min_diversification", 0, (4,), 6 * HOUR, 14, 7),  # proposed again
    )
    pending = tracker.pending_proposals()
    assert [(p["param"], p["values"], p["eta"]) for p in pending] == [
        ("direct_verifier", list(pin), 2 * HOUR),
        ("max_single_bps", [6000], 5 * HOUR),
        ("min_diversification", [4], 6 * HOUR),
    ]
    assert [p["status"] for p in tracker.proposals()] == [
        "proposed", "proposed", "proposed", "applied", "proposed", "cancelled", "proposed"
    ]
    applied = tracker.proposals()[3]
    assert (applied["subject"], applied["tx_hash"], applied["block_number"]) == (0xA11CE, 0xE4, 12)


def test_proposal_events_are_recorded_once_and_rolled_back_with_their_block(store: Store) -> None:
    tracker = GovernanceTracker(store)
    row = ("proposed", "max_single_bps", 0, (6000,), HOUR, 10, 1)
    _propose(tracker, store, row)
    _propose(tracker, store, row)  # a replay after restart
    with store.transaction() as db:
        assert not tracker.apply_proposal_event(db, "proposed", "max_single_bps", 0, (6000,),
                                                HOUR, 10, 0xE1, 1)
    _propose(tracker, store, ("applied", "max_single_bps", 0, (6000,), HOUR, 12, 2))
    assert tracker.pending_proposals() == []
    with store.transaction() as db:
        tracker.on_stream_rollback(db, 11)  # the apply is undone: pending again
    assert [p["event_id"] for p in tracker.pending_proposals()] == [1]


@pytest.mark.parametrize(
    ("status", "param", "value", "message"),
    [
        ("done", "max_single_bps", 1, "unknown proposal status 'done'"),
        ("proposed", "", 1, "param is empty"),
        ("proposed", "max_single_bps", -1, "must be a non-negative integer"),
    ],
)
def test_bad_proposal_events_are_refused(
    store: Store, status: str, param: str, value: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message), store.transaction() as db:
        GovernanceTracker(store).apply_proposal_event(db, status, param, 0, (value,), 1, 1, 1, 1)
    assert GovernanceTracker(store).proposals() == []


def test_values_are_shown_as_the_contract_means_them() -> None:
    assert format_value("direct_layout", encode_short_string("small")) == "small"
    assert format_value("bootloaded_hasher", 0) == "0"  # unset
    assert format_value("direct_hasher", 0x0A) == "0xa"  # no text: hex
    assert format_value("fact_registry", 0xFAC7) == "0xfac7"
    assert format_value("max_single_bps", 6000) == "6000"
    pin = DIRECT_PIN.felts()
    assert format_proposal_values("direct_verifier", pin) == (
        "(small, keccak_160_lsb, stone6, strict)"
    )
    assert format_proposal_values("bootloaded_verifier", [0, 0, 0, 0]) == "(0, 0, 0, 0)"
    assert format_proposal_values("keeper", [0]) == "disable"
    assert format_proposal_values("program_hash", [0x777]) == "0x777"


def test_command_shows_pending_changes_with_their_eta_then_closed_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = tmp_path / "keeper.sqlite3"
    eta = int(datetime(2025, 3, 2, 12, 0, tzinfo=UTC).timestamp())
    with open_store(store_path) as store:
        tracker = GovernanceTracker(store)
        tracker.record_initial("router", ROUTER_PARAMS, block_number=10)
        _propose(
            tracker,
            store,
            ("proposed", "max_single_bps", 0, (7000,), eta, 11, 1),
            ("proposed", "keeper", 0xA11CE, (0,), eta, 11, 2),
            ("proposed", "drift_threshold_bps", 0, (100,), eta, 11, 3),
            ("cancelled", "drift_threshold_bps", 0, (100,), eta, 12, 4),
        )
    config = str(_config(tmp_path, store_path))
    assert main(["governance", "--config", config]) == 0
    out = capsys.readouterr().out
    pending, closed, history = out.split("\n\n")
    lines = pending.splitlines()
    assert lines[0].startswith("pending changes")
    assert lines[1].split() == [
        "contract", "param", "subject", "values", "eta", "expires", "proposed", "in"
    ]
    assert lines[2].split() == [
        "router", "keeper", "0xa11ce", "disable", "2025-03-02T12:00:00Z",
        "2025-03-16T12:00:00Z", "0xe2",
    ]
    assert lines[3].split() == [
        "router", "max_single_bps", "7000", "2025-03-02T12:00:00Z", "2025-03-16T12:00:00Z",
        "0xe1",
    ]
    assert len(lines) == 4
    closed_lines = closed.splitlines()
    assert closed_lines[0] == "applied and cancelled changes:"
    assert closed_lines[2].split() == [
        "12", "0xe4", "cancelled", "router", "drift_threshold_bps", "100",
        "2025-03-02T12:00:00Z",
    ]
    assert history.startswith("parameter history:")

    assert main(["governance", "--config", config, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [p["param"] for p in shown["pending"]] == ["keeper", "max_single_bps"]
    assert shown["pending"][1] | {"at": None} == {
        "contract": "router", "param": "max_single_bps", "subject": None, "values": "7000",
        "raw_values": ["0x1b58"],
        "eta": eta, "eta_utc": "2025-03-02T12:00:00Z", "expires_utc": "2025-03-16T12:00:00Z",
        "status": "proposed", "block": 11, "tx": "0xe1", "event_id": 1, "at": None,
    }
    assert len(shown["proposals"]) == 4
    assert len(shown["history"]) == N_PARAMS
