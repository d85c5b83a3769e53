"""The event log: atomic ingest, idempotent replay, quarantine, rollback, exactly-once."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keeper.store.db import Store, open_store
from keeper.stream.errors import ReorgTooDeepError, StreamError
from keeper.stream.eventlog import Cursor, EventGoneError, EventLog, _hex_json
from keeper.stream.events import RebalanceRequested
from tests.stream.payloads import (
    ADDRESSES,
    RISK_ENGINE,
    SELECTORS,
    block,
    block_hash,
    meta,
    raw,
    rebalance,
)


def epochs(log: EventLog) -> list[int]:
    out = []
    for stored in log.next_unprocessed(1000):
        assert isinstance(stored.event, RebalanceRequested)
        out.append(stored.event.epoch)
    return out


def test_ingest_stores_events_in_chain_order_with_the_cursor(event_log: EventLog) -> None:
    result = event_log.ingest(
        [
            block(3, rebalance(3, 0, 0, epoch=1), rebalance(3, 1, 0, epoch=2)),
            block(5, rebalance(5, 0, 0, epoch=3)),
        ],
        Cursor(6, block_hash(6)),
    )
    assert (result.stored, result.quarantined, result.skipped) == (3, 0, 0)
    assert epochs(event_log) == [1, 2, 3]
    assert event_log.cursor() == Cursor(6, block_hash(6))
    assert event_log.stored_block_hashes(10) == [
        (6, block_hash(6)),
        (5, block_hash(5)),
        (3, block_hash(3)),
    ]


def test_replayed_blocks_are_skipped_not_duplicated(event_log: EventLog) -> None:
    batch = [block(3, rebalance(3, epoch=1)), block(4, rebalance(4, epoch=2))]
    event_log.ingest(batch, Cursor(4, block_hash(4)))
    again = event_log.ingest([*batch, block(5, rebalance(5, epoch=3))], Cursor(5, block_hash(5)))
    assert (again.stored, again.skipped) == (1, 2)
    assert epochs(event_log) == [1, 2, 3]


def test_malformed_and_foreign_events_are_quarantined_with_reason(
    event_log: EventLog, store: Store
) -> None:
    bad_layout = raw(meta(7, 1, 0), [SELECTORS["RebalanceRequested"], 1], [])
    foreign = raw(meta(7, 2, 0, address=0xDEAD), [SELECTORS["RebalanceRequested"], 1], [2])
    unknown = raw(meta(7, 3, 0, address=RISK_ENGINE), [0x1234], [])
    result = event_log.ingest(
        [block(7, rebalance(7, 0, 0, epoch=9), bad_layout, foreign, unknown)], Cursor(7)
    )
    assert (result.stored, result.quarantined) == (1, 3)
    assert epochs(event_log) == [9]
    reasons = sorted(r["reason"] for r in store.query("SELECT reason FROM stream_quarantine"))
    assert reasons == [
        "RebalanceRequested data: too short, requester missing",
        "event from unexpected address 0xdead",
        "unknown risk_engine event selector 0x1234",
    ]
    assert event_log.status().quarantined == 3


def test_quarantined_events_are_reported_once_each_after_commit(store: Store) -> None:
    counted: list[int] = []
    log = EventLog(store, source="test", addresses=ADDRESSES, on_quarantine=counted.append)
    bad = raw(meta(7, 1, 0), [SELECTORS["RebalanceRequested"], 1], [])
    foreign = raw(meta(7, 2, 0, address=0xDEAD), [SELECTORS["RebalanceRequested"], 1], [2])
    log.ingest([block(6, rebalance(6, epoch=1))], Cursor(6))
    assert counted == []  # nothing quarantined: no call
    log.ingest([block(7, rebalance(7, epoch=2), bad, foreign)], Cursor(7))
    assert counted == [2]
    # A replay of the same events quarantines nothing new, so counts nothing new.
    log.ingest([block(7, bad, foreign), block(8, rebalance(8, epoch=3))], Cursor(8))
    assert counted == [2]
    # A batch that fails does not commit its quarantine, so it is not counted either.
    later = raw(meta(9, 1, 0), [0x1234], [])
    with pytest.raises(StreamError, match="sent block 12 in a batch ending at block 10"):
        log.ingest([block(9, later), block(12)], Cursor(10))
    assert counted == [2]
    assert log.status().quarantined == 2
    log.ingest([block(9, later)], Cursor(9))
    assert counted == [2, 1]


def test_source_problem_event_is_quarantined_with_its_raw_text(
    event_log: EventLog, store: Store
) -> None:
    from keeper.stream.eventlog import RawEvent

    broken = RawEvent(
        meta(2, 0, 0),
        (),
        (),
        problem="keys[0]='zz' is not hex",
        raw_keys=("zz",),
        raw_data=("0x1",),
    )
    event_log.ingest([block(2, broken)], Cursor(2))
    [row] = store.query("SELECT keys, data, reason FROM stream_quarantine")
    assert row == {"keys": '["zz"]', "data": '["0x1"]', "reason": "keys[0]='zz' is not hex"}


def test_cursor_never_moves_back_without_rollback(event_log: EventLog) -> None:
    event_log.ingest([block(5, rebalance(5))], Cursor(5))
    with pytest.raises(StreamError, match="moved the cursor back from block 5 to 4"):
        event_log.ingest([], Cursor(4))
    with pytest.raises(StreamError, match="sent block 6 after block 8"):
        event_log.ingest([block(8), block(6)], Cursor(9))
    with pytest.raises(StreamError, match="block 12 in a batch ending at block 10"):
        event_log.ingest([block(12)], Cursor(10))
    assert event_log.cursor() == Cursor(5)


def _jobs_hook(calls: list[int]) -> object:
    def hook(db: sqlite_utils.Database, after_block: int) -> None:
        calls.append(after_block)
        # A jobs module would mark jobs triggered by the doomed events; they still exist here.
        db.execute(
            "UPDATE triggered_jobs SET state = 'rolled_back' WHERE event_id IN "
            "(SELECT id FROM stream_events WHERE block_number > ?)",
            (after_block,),
        )

    return hook


def test_rollback_removes_later_events_and_runs_hooks_in_the_same_transaction(
    event_log: EventLog, store: Store
) -> None:
    store.db.execute("CREATE TABLE triggered_jobs (event_id INTEGER, state TEXT)")
    calls: list[int] = []
    event_log.register_rollback_hook(_jobs_hook(calls))  # type: ignore[arg-type]
    bad = raw(meta(12, 9, 0), [SELECTORS["RebalanceRequested"]], [])
    event_log.ingest(
        [
            block(10, rebalance(10, epoch=1)),
            block(11, rebalance(11, epoch=2)),
            block(12, rebalance(12, epoch=3), bad),
        ],
        Cursor(12, block_hash(12)),
    )
    for stored in event_log.next_unprocessed():
        with store.transaction() as db:
            db.execute("INSERT INTO triggered_jobs VALUES (?, 'created')", (stored.id,))
    removed = event_log.rollback_after(10)
    assert removed == 2
    assert calls == [10]
    assert epochs(event_log) == [1]
    assert event_log.cursor() == Cursor(10, block_hash(10))
    states = store.query("SELECT state FROM triggered_jobs ORDER BY event_id")
    assert [r["state"] for r in states] == ["created", "rolled_back", "rolled_back"]
    assert event_log.status().quarantined == 0
    # The new fork's blocks are ingested after the rollback.
    event_log.ingest([block(11, rebalance(11, epoch=4, fork=1), fork=1)], Cursor(11))
    assert epochs(event_log) == [1, 4]


def test_failing_hook_aborts_the_rollback(event_log: EventLog) -> None:
    def broken(db: sqlite_utils.Database, after_block: int) -> None:
        raise RuntimeError("jobs table locked")

    event_log.ingest([block(4, rebalance(4)), block(5, rebalance(5))], Cursor(5))
    event_log.register_rollback_hook(broken)
    with pytest.raises(RuntimeError, match="jobs table locked"):
        event_log.rollback_after(4)
    assert len(event_log.next_unprocessed()) == 2
    assert event_log.cursor() == Cursor(5)


def test_mark_processed_requires_the_consumers_transaction(event_log: EventLog) -> None:
    event_log.ingest([block(1, rebalance(1))], Cursor(1))
    [stored] = event_log.next_unprocessed()
    with pytest.raises(StreamError, match=r"inside store\.transaction"):
        event_log.mark_processed(stored.id)
    assert len(event_log.next_unprocessed()) == 1


def test_event_rolled_back_before_commit_aborts_the_consumers_effects(
    event_log: EventLog, store: Store
) -> None:
    store.db.execute("CREATE TABLE effects (event_id INTEGER)")
    event_log.ingest([block(1, rebalance(1)), block(2, rebalance(2, epoch=2))], Cursor(2))
    pending = event_log.next_unprocessed()
    event_log.rollback_after(1)  # reorg between read and commit
    with pytest.raises(EventGoneError), store.transaction() as db:
        db.execute("INSERT INTO effects VALUES (?)", (pending[1].id,))
        event_log.mark_processed(pending[1].id)
    assert store.query("SELECT * FROM effects") == []


def _consume(path: Path, crash_after: int | None) -> list[int]:
    """Apply effects for pending events; raise mid-way to simulate a crash."""
    seen = []
    with open_store(path) as store:
        log = EventLog(store, source="test", addresses=ADDRESSES)
        for n, stored in enumerate(log.next_unprocessed(1000)):
            assert isinstance(stored.event, RebalanceRequested)
            with store.transaction() as db:
                db.execute("INSERT INTO effects VALUES (?)", (stored.event.epoch,))
                if crash_after is not None and n == crash_after:
                    raise KeyboardInterrupt  # dies before commit
                log.mark_processed(stored.id)
            seen.append(stored.event.epoch)
    return seen


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=6),
    crash_at=st.integers(min_value=0, max_value=20),
)
def test_each_event_takes_effect_exactly_once_across_crashes(
    tmp_path_factory: pytest.TempPathFactory, batches: list[int], crash_at: int
) -> None:
    path = tmp_path_factory.mktemp("eo") / "keeper.sqlite3"
    with open_store(path) as store:
        store.db.execute("CREATE TABLE effects (epoch INTEGER)")
    expected: list[int] = []
    number = 0
    for size in batches:
        with open_store(path) as store:
            log = EventLog(store, source="test", addresses=ADDRESSES)
            blocks = []
            for _ in range(size):
                number += 1
                expected.append(number)
                blocks.append(block(number, rebalance(number, epoch=number)))
            log.ingest(blocks, Cursor(number))
        with contextlib.suppress(KeyboardInterrupt):  # the simulated crash
            _consume(path, crash_at if crash_at < size else None)
    _consume(path, None)  # the restarted consumer finishes the rest
    with open_store(path) as store:
        applied = [r["epoch"] for r in store.query("SELECT epoch FROM effects ORDER BY rowid")]
    assert applied == expected


def test_only_the_newest_block_hashes_are_kept(event_log: EventLog) -> None:
    from keeper.stream.eventlog import KEPT_BLOCK_HASHES

    event_log.ingest(
        [block(n) for n in range(KEPT_BLOCK_HASHES + 50)],
        Cursor(KEPT_BLOCK_HASHES + 60, block_hash(KEPT_BLOCK_HASHES + 60)),
    )
    kept = event_log.stored_block_hashes(10 * KEPT_BLOCK_HASHES)
    assert len(kept) == KEPT_BLOCK_HASHES
    assert kept[0] == (KEPT_BLOCK_HASHES + 60, block_hash(KEPT_BLOCK_HASHES + 60))


# -- finality and position (the DNA v2 source's Finalize) -----------------------------------
def test_finality_is_stored_moves_only_forward_and_survives_a_restart(
    event_log: EventLog, store: Store
) -> None:
    assert event_log.finalized() is None
    assert event_log.record_finalized(Cursor(5, 0x5))
    assert not event_log.record_finalized(Cursor(4, 0x4))
    assert not event_log.record_finalized(Cursor(5, 0x5))
    again = EventLog(store, source="test", addresses=ADDRESSES)
    assert again.finalized() == Cursor(5, 0x5)
    assert again.position.finalized == Cursor(5, 0x5)
    assert again.status().finalized == Cursor(5, 0x5)


def test_no_rollback_below_the_finalized_block(event_log: EventLog) -> None:
    event_log.ingest([block(n, rebalance(n, 0, 0, epoch=n)) for n in (3, 4, 5)], Cursor(5, 0x5))
    event_log.record_finalized(Cursor(4))
    with pytest.raises(ReorgTooDeepError, match="below block 4 which it reported finalized"):
        event_log.rollback_after(3)
    assert len(event_log.next_unprocessed()) == 3
    assert event_log.rollback_after(4) == 1  # down to the finalized block itself is fine


def test_rollback_to_a_cursor_the_source_names_and_the_position_follows(
    event_log: EventLog,
) -> None:
    event_log.ingest([block(n, rebalance(n, 0, 0, epoch=n)) for n in (3, 4)], Cursor(4, 0x4))
    assert event_log.position.cursor == Cursor(4, 0x4)
    event_log.rollback_after(3, to=Cursor(3, 0xF3))
    assert event_log.cursor() == Cursor(3, 0xF3)
    assert event_log.position.cursor == Cursor(3, 0xF3)
    with pytest.raises(StreamError, match="rollback to block 2 with a cursor at"):
        event_log.rollback_after(2, to=Cursor(1))


@given(st.lists(st.integers(min_value=0, max_value=2**256 - 1), max_size=20))
def test_stored_keys_and_data_are_the_json_of_their_hex_text(values: list[int]) -> None:
    assert _hex_json(values) == json.dumps([hex(v) for v in values])
