"""The Apibara source against a local grpc.aio server speaking the package's own protobufs."""

from __future__ import annotations

import asyncio

import pytest
import sqlite_utils
from apibara.protocol.proto import stream_pb2
from apibara.starknet.proto import filter_pb2
from structlog.testing import capture_logs

from keeper.store.db import Store
from keeper.stream.apibara_source import ApibaraSource, felt_from_proto
from keeper.stream.errors import EX_TEMPFAIL, StreamError, StreamStalledError
from keeper.stream.eventlog import Cursor, EventLog
from keeper.stream.events import SELECTORS, RebalanceRequested
from tests.fakes.apibara_server import (
    Drop,
    End,
    FakeApibaraServer,
    FakeEvent,
    Send,
    Stall,
    Step,
    block_bytes,
    cursor,
    data,
    heartbeat,
    invalidate,
)
from tests.stream.payloads import ADDRESSES, RISK_ENGINE, ROUTER, block_hash


def rebalance_event(epoch: int, tx: int, index: int = 0) -> FakeEvent:
    return FakeEvent(ROUTER, [SELECTORS["RebalanceRequested"], epoch], [0xAB, 1], tx, index)


def batch(*numbers: int, fork: int = 0) -> Send:
    """One data message: a block with one RebalanceRequested(epoch=n) per number."""
    blocks = [
        block_bytes(n, block_hash(n, fork), [rebalance_event(n, tx=0x1000 + n)]) for n in numbers
    ]
    last = numbers[-1]
    return data(blocks, cursor(last, block_hash(last, fork)))


class Harness:
    """Runs a source until ``expected`` messages were handled, without sleeping: the
    source's clock is fake and only its (recorded) reconnect waits move it on. Real time
    still bounds a read, so a silent server stalls after ``stall_deadline_s`` for real."""

    def __init__(self, log: EventLog, url: str, **kwargs: object) -> None:
        self.handled: list[str] = []
        self.waits: list[float] = []
        self.now = 0.0
        self._wanted = 0
        self._reached = asyncio.Event()
        self.source = ApibaraSource(
            log,
            url=url,
            addresses=ADDRESSES,
            on_progress=self._on_progress,
            clock=lambda: self.now,
            sleep=self._sleep,
            **kwargs,  # type: ignore[arg-type]
        )

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def _on_progress(self, what: str) -> None:
        self.handled.append(what)
        if len(self.handled) >= self._wanted:
            self._reached.set()

    async def run_until(self, count: int) -> None:
        self._wanted = count
        self._reached.clear()
        task = asyncio.create_task(self.source.run())
        waiter = asyncio.create_task(self._reached.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=30, return_when="FIRST_COMPLETED")
        task.cancel()
        waiter.cancel()
        if task in done and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        assert waiter in done, f"only handled {self.handled}"


def epochs(log: EventLog) -> list[int]:
    out = []
    for stored in log.next_unprocessed(1000):
        assert isinstance(stored.event, RebalanceRequested)
        out.append(stored.event.epoch)
    return out


async def test_data_batches_are_stored_with_the_end_cursor_and_filter(
    event_log: EventLog,
) -> None:
    async with FakeApibaraServer([[batch(3, 4), batch(7)]]) as server:
        harness = Harness(event_log, server.url, batch_size=25, finality="finalized")
        await harness.run_until(2)
    assert epochs(event_log) == [3, 4, 7]
    assert event_log.cursor() == Cursor(7, block_hash(7))
    [request] = server.requests
    assert not request.HasField("starting_cursor")
    assert (request.batch_size, request.finality) == (25, stream_pb2.DATA_STATUS_FINALIZED)
    flt = filter_pb2.Filter.FromString(request.filter)
    pairs = {(felt_from_proto(f.from_address), felt_from_proto(f.keys[0])) for f in flt.events}
    assert (ROUTER, SELECTORS["RebalanceRequested"]) in pairs
    assert (RISK_ENGINE, SELECTORS["MetricsUpdated"]) in pairs
    assert (RISK_ENGINE, SELECTORS["RebalanceRequested"]) not in pairs
    assert len(pairs) == 18  # 9 router events + 9 RiskEngine events (its timelock's too)


async def test_fresh_store_starts_after_start_block_minus_one(event_log: EventLog) -> None:
    async with FakeApibaraServer([[heartbeat()]]) as server:
        await Harness(event_log, server.url, start_block=100).run_until(1)
    assert server.requests[0].starting_cursor.order_key == 99


async def test_restart_resumes_from_the_stored_cursor(event_log: EventLog) -> None:
    async with FakeApibaraServer([[batch(3, 4)], [batch(5)]]) as server:
        await Harness(event_log, server.url).run_until(1)
        await Harness(event_log, server.url).run_until(1)
    second = server.requests[1].starting_cursor
    assert (second.order_key, second.unique_key) == (4, block_hash(4).to_bytes(32, "big"))
    assert epochs(event_log) == [3, 4, 5]


async def test_invalidate_rolls_back_events_and_triggered_jobs(
    event_log: EventLog, store: Store
) -> None:
    store.db.execute("CREATE TABLE triggered (event_id INTEGER, state TEXT)")

    def hook(db: sqlite_utils.Database, after_block: int) -> None:
        db.execute(
            "UPDATE triggered SET state = 'rolled_back' WHERE event_id IN "
            "(SELECT id FROM stream_events WHERE block_number > ?)",
            (after_block,),
        )

    event_log.register_rollback_hook(hook)
    async with FakeApibaraServer(
        [[batch(10, 11, 12)], [invalidate(10, block_hash(10)), batch(11, 12, fork=1)]]
    ) as server:
        await Harness(event_log, server.url).run_until(1)
        for stored in event_log.next_unprocessed():
            with store.transaction() as db:
                db.execute("INSERT INTO triggered VALUES (?, 'created')", (stored.id,))
                event_log.mark_processed(stored.id)
        await Harness(event_log, server.url).run_until(2)
    assert [r["state"] for r in store.query("SELECT state FROM triggered")] == [
        "created",
        "rolled_back",
        "rolled_back",
    ]
    assert epochs(event_log) == [11, 12]  # the new fork's, unprocessed
    hashes = [
        r["block_hash"] for r in store.query("SELECT block_hash FROM stream_events ORDER BY id")
    ]
    assert hashes == [hex(block_hash(n, f)) for n, f in ((10, 0), (11, 1), (12, 1))]
    assert event_log.cursor() == Cursor(12, block_hash(12, 1))


async def test_heartbeat_only_proves_liveness(event_log: EventLog) -> None:
    async with FakeApibaraServer([[heartbeat(), heartbeat(), batch(2)]]) as server:
        harness = Harness(event_log, server.url)
        await harness.run_until(3)
    assert harness.handled == ["heartbeat", "heartbeat", "data"]
    assert epochs(event_log) == [2]


async def test_pending_data_is_never_stored(event_log: EventLog) -> None:
    pending = data(
        [block_bytes(9, block_hash(9), [rebalance_event(9, tx=1)])],
        cursor(9),
        finality=stream_pb2.DATA_STATUS_PENDING,
    )
    async with FakeApibaraServer([[batch(8), pending]]) as server:
        await Harness(event_log, server.url, finality="pending").run_until(2)
    assert epochs(event_log) == [8]
    assert event_log.cursor() == Cursor(8, block_hash(8))


@pytest.mark.parametrize("how", [Drop(), End()])
async def test_dropped_connection_reconnects_from_the_cursor_without_gaps_or_duplicates(
    event_log: EventLog, how: Step
) -> None:
    scripts: list[list[Step]] = [[batch(1, 2), how], [batch(2, 3), batch(4)]]
    async with FakeApibaraServer(scripts) as server:
        harness = Harness(event_log, server.url)
        await harness.run_until(4)
    assert harness.handled == ["data", "disconnected", "data", "data"]
    assert harness.waits == []  # the connection had worked: reconnected at once
    assert server.requests[1].starting_cursor.order_key == 2
    assert epochs(event_log) == [1, 2, 3, 4]


async def test_failing_reconnects_back_off_and_log_each_wait(event_log: EventLog) -> None:
    scripts: list[list[Step]] = [[batch(1), Drop()], [Drop()], [End()], [Drop()], [batch(2)]]
    async with FakeApibaraServer(scripts) as server:
        harness = Harness(event_log, server.url)
        with capture_logs() as logs:
            await harness.run_until(6)
    assert harness.handled == ["data", *["disconnected"] * 4, "data"]
    drops = [e for e in logs if e["event"] == "stream.disconnected"]
    assert [e["url"] for e in drops] == [server.url] * 4
    # The first drop (a working connection) reconnects at once; then each failed
    # reconnect waits what its log line says, in a window that doubles from 0.5 s.
    assert [e["retry_in_s"] for e in drops] == [0.0, *harness.waits]
    assert len(harness.waits) == 3
    for attempt, wait in enumerate(harness.waits, start=1):
        assert 0.25 <= wait <= 0.5 * 2 ** (attempt - 1)
    assert [r.starting_cursor.order_key for r in server.requests[1:]] == [1, 1, 1, 1]
    assert epochs(event_log) == [1, 2]


async def test_backoff_starts_over_after_a_connection_that_worked(event_log: EventLog) -> None:
    scripts: list[list[Step]] = [[Drop()], [Drop()], [batch(1), Drop()], [Drop()], [batch(2)]]
    async with FakeApibaraServer(scripts) as server:
        harness = Harness(event_log, server.url)
        await harness.run_until(6)
    assert harness.handled == [
        "disconnected", "disconnected", "data", "disconnected", "disconnected", "data"
    ]
    first_outage, second_outage = harness.waits[:2], harness.waits[2:]
    assert len(second_outage) == 1
    assert 0.25 <= first_outage[0] <= 0.5 and 0.25 <= first_outage[1] <= 1.0
    assert 0.25 <= second_outage[0] <= 0.5  # attempt 1 again, not attempt 3


async def test_stalled_stream_is_dead(event_log: EventLog) -> None:
    async with FakeApibaraServer([[batch(1), Stall()]]) as server:
        harness = Harness(event_log, server.url, stall_deadline_s=0.3)
        with pytest.raises(StreamStalledError, match="no message from Apibara") as info:
            await harness.run_until(99)
    assert info.value.exit_code == EX_TEMPFAIL
    assert epochs(event_log) == [1]


async def test_unreachable_server_counts_as_stalled(event_log: EventLog) -> None:
    harness = Harness(event_log, "127.0.0.1:1", stall_deadline_s=2.0)
    with pytest.raises(StreamStalledError, match=r"no message from Apibara at 127\.0\.0\.1:1 "):
        await harness.run_until(99)
    assert harness.handled and set(harness.handled) == {"disconnected"}
    # Retried until the deadline, the last wait cut short so as to end right on it.
    assert sum(harness.waits) == pytest.approx(2.0)
    assert len(harness.handled) == len(harness.waits)


async def test_batch_with_malformed_event_quarantines_it_and_goes_on(
    event_log: EventLog, store: Store
) -> None:
    bad = FakeEvent(ROUTER, [SELECTORS["KeeperUpdated"], 5], [7], tx_hash=0x99, index=1)
    blocks = [block_bytes(5, block_hash(5), [rebalance_event(5, tx=0x98), bad])]
    async with FakeApibaraServer([[data(blocks, cursor(5)), batch(6)]]) as server:
        await Harness(event_log, server.url).run_until(2)
    assert epochs(event_log) == [5, 6]
    [row] = store.query("SELECT tx_hash, event_index, reason FROM stream_quarantine")
    assert row == {
        "tx_hash": "0x99",
        "event_index": 1,
        "reason": "KeeperUpdated data: enabled=0x7 is not a bool (0 or 1)",
    }


async def test_undecodable_block_stops_the_stream_without_moving_the_cursor(
    event_log: EventLog,
) -> None:
    async with FakeApibaraServer([[batch(1), data([b"\xff\xff\xff"], cursor(2))]]) as server:
        with pytest.raises(StreamError, match="not a DNA v1alpha2 Starknet block"):
            await Harness(event_log, server.url).run_until(99)
    assert event_log.cursor() == Cursor(1, block_hash(1))
