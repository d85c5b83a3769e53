"""The DNA v2 source against a local DnaStream server built from the keeper's own protos."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
import sqlite_utils
from structlog.testing import capture_logs

from keeper.core.errors import EX_CONFIG
from keeper.store.db import Store
from keeper.stream.dna_codec import cursor_from_proto, felt_from_proto
from keeper.stream.dna_proto.dna.v2 import stream_pb2
from keeper.stream.dna_proto.starknet.v2 import filter_pb2
from keeper.stream.dna_source import (
    DnaAuthError,
    DnaEndpoint,
    DnaRequestRefusedError,
    DnaSource,
    fetch_status,
)
from keeper.stream.errors import EX_TEMPFAIL, ReorgTooDeepError, StreamError, StreamStalledError
from keeper.stream.eventlog import Cursor, EventLog
from keeper.stream.events import SELECTORS, RebalanceRequested
from tests.fakes.dna_server import (
    CuttingProxy,
    Drop,
    End,
    Fail,
    FakeDnaServer,
    FakeEvent,
    Send,
    Stall,
    Step,
    block_bytes,
    cursor_not_found,
    data,
    finalize,
    heartbeat,
    invalidate,
    out_of_range,
    system_message,
)
from tests.stream.payloads import ADDRESSES, RISK_ENGINE, ROUTER, block_hash

TOKEN = "dna-test-token-0123456789"


def rebalance_event(epoch: int, tx: int, index: int = 0) -> FakeEvent:
    return FakeEvent(ROUTER, [SELECTORS["RebalanceRequested"], epoch], [0xAB, 1], tx, index)


def block(
    n: int,
    fork: int = 0,
    *,
    finality: int = stream_pb2.DATA_FINALITY_ACCEPTED,
    production: int = stream_pb2.DATA_PRODUCTION_LIVE,
) -> Send:
    """One Data message: block n with one RebalanceRequested(epoch=n)."""
    raw = block_bytes(n, block_hash(n, fork), [rebalance_event(n, tx=0x1000 + n + fork)])
    return data(raw, n, block_hash(n, fork), finality=finality, production=production)


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
        kwargs.setdefault("token", TOKEN)
        self.source = DnaSource(
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
    for stored in log.next_unprocessed(10_000):
        assert isinstance(stored.event, RebalanceRequested)
        out.append(stored.event.epoch)
    return out


def server(scripts: list[list[Step]], **kwargs: object) -> FakeDnaServer:
    kwargs.setdefault("token", TOKEN)
    return FakeDnaServer(scripts, **kwargs)  # type: ignore[arg-type]


# -- the request ---------------------------------------------------------------------------
async def test_request_filter_finality_heartbeat_and_bearer_token(event_log: EventLog) -> None:
    async with server([[heartbeat()]]) as dna:
        harness = Harness(event_log, dna.url, finality="finalized", heartbeat_interval_s=15)
        await harness.run_until(1)
    [request] = dna.requests
    assert not request.HasField("starting_cursor")
    assert request.finality == stream_pb2.DATA_FINALITY_FINALIZED
    assert request.heartbeat_interval.seconds == 15
    [raw_filter] = request.filter
    flt = filter_pb2.Filter.FromString(raw_filter)
    pairs = {(felt_from_proto(f.address), felt_from_proto(f.keys[0].value)) for f in flt.events}
    assert (ROUTER, SELECTORS["RebalanceRequested"]) in pairs
    assert (RISK_ENGINE, SELECTORS["MetricsUpdated"]) in pairs
    assert (RISK_ENGINE, SELECTORS["RebalanceRequested"]) not in pairs
    assert len(pairs) == 18  # 9 router events + 9 RiskEngine events (governance included)
    assert not any(f.include_receipt for f in flt.events)
    assert dna.metadata[0]["authorization"] == f"Bearer {TOKEN}"


async def test_fresh_store_starts_after_start_block_minus_one(event_log: EventLog) -> None:
    async with server([[heartbeat()]]) as dna:
        await Harness(event_log, dna.url, start_block=100).run_until(1)
    assert cursor_from_proto(dna.requests[0].starting_cursor) == Cursor(99)


# -- data, finalize, invalidate ------------------------------------------------------------
async def test_backfill_then_live_each_block_stored_with_its_cursor(event_log: EventLog) -> None:
    final, old = stream_pb2.DATA_FINALITY_FINALIZED, stream_pb2.DATA_PRODUCTION_BACKFILL
    script: list[Step] = [
        block(1, finality=final, production=old),
        block(2, finality=final, production=old),
        block(3, production=old),
        finalize(3, block_hash(3)),
        block(4),
        heartbeat(),
        block(5),
    ]
    async with server([script]) as dna:
        harness = Harness(event_log, dna.url)
        await harness.run_until(7)
    assert epochs(event_log) == [1, 2, 3, 4, 5]
    assert event_log.cursor() == Cursor(5, block_hash(5))
    assert event_log.finalized() == Cursor(3, block_hash(3))  # finalized data, then Finalize
    assert harness.source.position.cursor == Cursor(5, block_hash(5))
    assert harness.source.position.finalized == Cursor(3, block_hash(3))
    assert harness.source.position.head == Cursor(5, block_hash(5))  # live data: the head


async def test_restart_resumes_after_the_stored_cursor(event_log: EventLog) -> None:
    async with server([[block(3), block(4)], [block(5)]]) as dna:
        await Harness(event_log, dna.url).run_until(2)
        await Harness(event_log, dna.url).run_until(1)
    assert cursor_from_proto(dna.requests[1].starting_cursor) == Cursor(4, block_hash(4))
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
    async with server(
        [[block(10), block(11), block(12)],
         [invalidate(10, block_hash(10)), block(11, fork=1), block(12, fork=1)]]
    ) as dna:
        await Harness(event_log, dna.url).run_until(3)
        for stored in event_log.next_unprocessed():
            with store.transaction() as db:
                db.execute("INSERT INTO triggered VALUES (?, 'created')", (stored.id,))
                event_log.mark_processed(stored.id)
        await Harness(event_log, dna.url).run_until(3)
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


async def test_invalidate_moves_the_cursor_back_to_its_cursor(event_log: EventLog) -> None:
    async with server([[block(1), block(2), invalidate(1, 0x1A)]]) as dna:
        await Harness(event_log, dna.url).run_until(3)
    assert event_log.cursor() == Cursor(1, 0x1A)
    assert epochs(event_log) == [1]


async def test_finalize_is_recorded_and_no_invalidate_below_it_is_accepted(
    event_log: EventLog,
) -> None:
    script: list[Step] = [block(1), block(2), finalize(2, block_hash(2)), block(3), invalidate(1)]
    async with server([script]) as dna:
        with pytest.raises(ReorgTooDeepError, match="below block 2 which it reported finalized"):
            await Harness(event_log, dna.url).run_until(99)
    assert event_log.finalized() == Cursor(2, block_hash(2))
    assert epochs(event_log) == [1, 2, 3]  # nothing rolled back
    assert event_log.cursor() == Cursor(3, block_hash(3))


async def test_finality_never_moves_back(event_log: EventLog) -> None:
    async with server([[finalize(5, 0x5), finalize(4, 0x4), heartbeat()]]) as dna:
        await Harness(event_log, dna.url).run_until(3)
    assert event_log.finalized() == Cursor(5, 0x5)


async def test_heartbeat_only_stream_is_alive_and_stores_nothing(event_log: EventLog) -> None:
    async with server([[heartbeat(), heartbeat(), heartbeat()]]) as dna:
        harness = Harness(event_log, dna.url)
        await harness.run_until(3)
    assert harness.handled == ["heartbeat"] * 3
    assert event_log.cursor() is None
    assert len(dna.requests) == 1


async def test_system_messages_are_logged(event_log: EventLog) -> None:
    script: list[Step] = [system_message(stdout="maintenance at 12:00"),
                          system_message(stderr="lagging")]
    async with server([script]) as dna:
        with capture_logs() as logs:
            await Harness(event_log, dna.url).run_until(2)
    said = [(e["log_level"], e["output"], e["text"]) for e in logs
            if e["event"] == "stream.server_message"]
    assert said == [("info", "stdout", "maintenance at 12:00"), ("warning", "stderr", "lagging")]


# -- connections ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", [Drop(), End()])
async def test_dropped_connection_reconnects_from_the_cursor_without_gaps_or_duplicates(
    event_log: EventLog, how: Step
) -> None:
    scripts: list[list[Step]] = [[block(1), block(2), how], [block(3), block(4)]]
    async with server(scripts) as dna:
        harness = Harness(event_log, dna.url)
        await harness.run_until(5)
    assert harness.handled == ["data", "data", "disconnected", "data", "data"]
    assert harness.waits == []  # the connection had worked: reconnected at once
    assert cursor_from_proto(dna.requests[1].starting_cursor) == Cursor(2, block_hash(2))
    assert epochs(event_log) == [1, 2, 3, 4]


async def test_connection_cut_in_the_middle_of_a_message(event_log: EventLog) -> None:
    """The TCP connection dies inside a large Data message: nothing of it is stored, the
    source reconnects from the last whole block it stored and gets the rest, once."""
    crowd = [rebalance_event(2_000 + i, tx=0x5000 + i, index=i) for i in range(3_000)]
    big = data(block_bytes(2, block_hash(2), crowd), 2, block_hash(2))
    assert len(big.response.SerializeToString()) > 200_000
    chain = {1: block(1), 2: big, 3: block(3)}

    def after_cursor(request: Any) -> list[Step]:  # what a server replays on reconnect
        if not request.HasField("starting_cursor"):
            return list(chain.values())
        start = cursor_from_proto(request.starting_cursor).block_number
        return [step for n, step in chain.items() if n > start]

    async with server([[block(1), big], after_cursor]) as dna, CuttingProxy(
        dna.port, cut_after=60_000
    ) as proxy:
        harness = Harness(event_log, proxy.url)
        await harness.run_until(4)
        assert proxy.cut.is_set()
    # Block 1 may or may not have been read before the cut; either way one disconnect,
    # then everything after the stored cursor, once.
    assert harness.handled.count("disconnected") == 1
    assert epochs(event_log) == [1, *range(2_000, 5_000), 3]  # block 2 whole, once
    assert event_log.cursor() == Cursor(3, block_hash(3))


async def test_failing_reconnects_back_off_and_log_each_wait(event_log: EventLog) -> None:
    scripts: list[list[Step]] = [[block(1), Drop()], [Drop()], [End()], [Drop()], [block(2)]]
    async with server(scripts) as dna:
        harness = Harness(event_log, dna.url)
        with capture_logs() as logs:
            await harness.run_until(6)
    assert harness.handled == ["data", *["disconnected"] * 4, "data"]
    drops = [e for e in logs if e["event"] == "stream.disconnected"]
    assert [e["retry_in_s"] for e in drops] == [0.0, *harness.waits]
    assert len(harness.waits) == 3
    for attempt, wait in enumerate(harness.waits, start=1):
        assert 0.25 <= wait <= 0.5 * 2 ** (attempt - 1)
    assert epochs(event_log) == [1, 2]


async def test_stalled_stream_is_dead(event_log: EventLog) -> None:
    async with server([[block(1), Stall()]]) as dna:
        harness = Harness(event_log, dna.url, stall_deadline_s=0.3)
        with pytest.raises(StreamStalledError, match="no message from the DNA server") as info:
            await harness.run_until(99)
    assert info.value.exit_code == EX_TEMPFAIL
    assert epochs(event_log) == [1]


async def test_unreachable_server_counts_as_stalled(event_log: EventLog) -> None:
    harness = Harness(event_log, "http://127.0.0.1:1", stall_deadline_s=2.0)
    with pytest.raises(StreamStalledError, match=r"DNA server at http://127\.0\.0\.1:1 "):
        await harness.run_until(99)
    assert harness.handled and set(harness.handled) == {"disconnected"}
    assert sum(harness.waits) == pytest.approx(2.0)


# -- errors the server answers -------------------------------------------------------------
async def test_cursor_not_found_rewinds_to_the_last_finalized_block(
    event_log: EventLog, store: Store
) -> None:
    """The stored block was reorged away while the keeper was disconnected: roll back to
    the finalized block, re-ingest from there; nothing counted twice."""
    scripts: list[list[Step]] = [
        [block(1), block(2), finalize(2, block_hash(2)), block(3), block(4), Drop()],
        [cursor_not_found(4)],
        [block(3, fork=1), block(4, fork=1), block(5, fork=1)],
    ]
    async with server(scripts) as dna:
        harness = Harness(event_log, dna.url)
        with capture_logs() as logs:
            await harness.run_until(10)
    assert harness.handled == [
        "data", "data", "finalize", "data", "data", "disconnected", "rewound",
        "data", "data", "data",
    ]
    assert cursor_from_proto(dna.requests[2].starting_cursor) == Cursor(2, block_hash(2))
    assert epochs(event_log) == [1, 2, 3, 4, 5]
    hashes = [r["block_hash"] for r in store.query(
        "SELECT block_hash FROM stream_events ORDER BY block_number")]
    assert hashes == [hex(block_hash(n, f)) for n, f in ((1, 0), (2, 0), (3, 1), (4, 1), (5, 1))]
    [line] = [e for e in logs if e["event"] == "stream.cursor_not_found"]
    assert (line["stored_block"], line["rewind_to"]) == (4, 2)
    assert harness.waits == []


async def test_cursor_not_found_without_finality_rewinds_to_before_start_block(
    event_log: EventLog,
) -> None:
    scripts: list[list[Step]] = [
        [block(11), block(12), Drop()], [cursor_not_found(12)], [block(11), block(12, fork=1)]
    ]
    async with server(scripts) as dna:
        await Harness(event_log, dna.url, start_block=10).run_until(6)
    assert cursor_from_proto(dna.requests[2].starting_cursor) == Cursor(9)
    assert epochs(event_log) == [11, 12]
    assert event_log.cursor() == Cursor(12, block_hash(12, 1))


async def test_finalized_cursor_not_found_either_is_a_deep_reorg(event_log: EventLog) -> None:
    scripts: list[list[Step]] = [
        [block(1), finalize(1, block_hash(1)), Drop()], [cursor_not_found(1)]
    ]
    async with server(scripts) as dna:
        with pytest.raises(ReorgTooDeepError, match="the last finalized one"):
            await Harness(event_log, dna.url).run_until(99)
    assert epochs(event_log) == [1]


async def test_out_of_range_waits_and_retries(event_log: EventLog) -> None:
    """The stored cursor is past the server's head (it is catching up): wait, retry."""
    event_log.ingest([], Cursor(50, block_hash(50)))
    scripts: list[list[Step]] = [[out_of_range(50, 48)], [out_of_range(50, 49)], [block(51)]]
    async with server(scripts) as dna:
        harness = Harness(event_log, dna.url)
        with capture_logs() as logs:
            await harness.run_until(3)
    assert harness.handled == ["server_behind", "server_behind", "data"]
    assert len(harness.waits) == 2 and all(w >= 0.25 for w in harness.waits)
    behind = [e for e in logs if e["event"] == "stream.server_behind"]
    assert [e["detail"] for e in behind] == [
        "OUT_OF_RANGE: cursor 50 is after the last ingested block 48",
        "OUT_OF_RANGE: cursor 50 is after the last ingested block 49",
    ]
    assert epochs(event_log) == [51]


async def test_a_server_behind_for_the_whole_deadline_is_a_stall(event_log: EventLog) -> None:
    event_log.ingest([], Cursor(50))
    async with server([[out_of_range(50, 10)]] * 50) as dna:
        harness = Harness(event_log, dna.url, stall_deadline_s=3.0)
        with pytest.raises(StreamStalledError, match="behind the keeper's stored cursor") as info:
            await harness.run_until(999)
    assert info.value.exit_code == EX_TEMPFAIL
    assert sum(harness.waits) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("token", "code", "held"),
    [
        ("wrong-token-0123456789", "UNAUTHENTICATED", "with the dna_token secret"),
        (None, "UNAUTHENTICATED", "with no dna_token secret"),
    ],
)
async def test_a_refused_token_exits_78_once_without_showing_it(
    event_log: EventLog, token: str | None, code: str, held: str
) -> None:
    async with server([[block(1)]]) as dna:
        harness = Harness(event_log, dna.url, token=token)
        with capture_logs() as logs, pytest.raises(DnaAuthError) as info:
            await harness.run_until(99)
    assert info.value.exit_code == EX_CONFIG
    message = str(info.value)
    assert code in message and held in message and "KEEPER_DNA_TOKEN_FILE" in message
    assert "\n" not in message
    assert len(dna.requests) == 1  # no reconnect loop
    assert token is None or token not in message + repr(logs)
    assert event_log.cursor() is None


async def test_permission_denied_exits_78(event_log: EventLog) -> None:
    denied = Fail(grpc.StatusCode.PERMISSION_DENIED, "plan does not include mainnet")
    async with server([[denied]]) as dna:
        with pytest.raises(DnaAuthError, match="PERMISSION_DENIED: plan does not include"):
            await Harness(event_log, dna.url).run_until(99)
    assert len(dna.requests) == 1


async def test_a_server_echoing_the_token_does_not_get_it_into_the_message(
    event_log: EventLog,
) -> None:
    echo = Fail(grpc.StatusCode.UNAUTHENTICATED, f"token {TOKEN} expired")
    async with server([[echo]]) as dna:
        with pytest.raises(DnaAuthError) as info:
            await Harness(event_log, dna.url).run_until(99)
    assert TOKEN not in str(info.value) and "token <dna_token> expired" in str(info.value)


async def test_a_refused_request_is_a_config_error_not_a_retry_loop(event_log: EventLog) -> None:
    refused = Fail(
        grpc.StatusCode.INVALID_ARGUMENT, "cursor 9 is before the first ingested block 500"
    )
    async with server([[refused]]) as dna:
        with pytest.raises(DnaRequestRefusedError, match=r"raise stream\.start_block") as info:
            await Harness(event_log, dna.url, start_block=10).run_until(99)
    assert info.value.exit_code == EX_CONFIG
    assert len(dna.requests) == 1


# -- blocks that do not decode -------------------------------------------------------------
async def test_malformed_event_is_quarantined_and_the_stream_goes_on(
    event_log: EventLog, store: Store
) -> None:
    bad = FakeEvent(ROUTER, [SELECTORS["KeeperUpdated"], 5], [7], tx_hash=0x99, index=1)
    raw = block_bytes(5, block_hash(5), [rebalance_event(5, tx=0x98), bad])
    async with server([[data(raw, 5, block_hash(5)), block(6)]]) as dna:
        await Harness(event_log, dna.url).run_until(2)
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
    async with server([[block(1), data(b"\xff\xff\xff", 2, block_hash(2)), block(3)]]) as dna:
        with pytest.raises(StreamError, match=r"block 2 as bytes that are not a starknet\.v2"):
            await Harness(event_log, dna.url).run_until(99)
    assert event_log.cursor() == Cursor(1, block_hash(1))
    assert epochs(event_log) == [1]


# -- status and endpoints ------------------------------------------------------------------
async def test_status_gives_head_and_finalized(event_log: EventLog) -> None:
    async with server([], head=Cursor(90, 0x90), finalized=Cursor(80, 0x80)) as dna:
        head, final = await fetch_status(DnaEndpoint.parse(dna.url), TOKEN)
    assert (head, final) == (Cursor(90, 0x90), Cursor(80, 0x80))


async def test_the_source_follows_the_servers_head_while_connected(event_log: EventLog) -> None:
    async with server([[Stall()]], head=Cursor(77, 0x77)) as dna:
        source = DnaSource(event_log, url=dna.url, addresses=ADDRESSES, token=TOKEN,
                           status_interval_s=0.01)
        task = asyncio.create_task(source.run())
        # The second Status call comes after the source handled the first one's answer.
        await asyncio.wait_for(dna.servicer.status_calls_reach(2), timeout=30)
        task.cancel()
    assert source.position.head == Cursor(77, 0x77)


@pytest.mark.parametrize(
    ("url", "target", "tls"),
    [
        ("https://mainnet.starkstream.io", "mainnet.starkstream.io:443", True),
        ("https://dna.example.org:7443/", "dna.example.org:7443", True),
        ("http://127.0.0.1:7171", "127.0.0.1:7171", False),
        ("http://[::1]:7171", "[::1]:7171", False),
    ],
)
def test_endpoints(url: str, target: str, tls: bool) -> None:
    endpoint = DnaEndpoint.parse(url)
    assert (endpoint.target, endpoint.tls) == (target, tls)


@pytest.mark.parametrize(
    "url", ["mainnet.starkstream.io:443", "grpc://x:1", "https://u:p@x", "https://x/v2?key=1"]
)
def test_endpoints_refused(url: str) -> None:
    with pytest.raises(StreamError, match=r"stream\.dna_url"):
        DnaEndpoint.parse(url)


async def test_a_live_block_without_matches_moves_the_cursor_to_the_head(
    event_log: EventLog,
) -> None:
    """The filter asks for the header of every live block: on a quiet chain the stored
    cursor follows the head (the lag stays true), storing no event."""
    async with server([[block(3), data(block_bytes(4, block_hash(4)), 4, block_hash(4))]]) as dna:
        await Harness(event_log, dna.url).run_until(2)
    assert event_log.cursor() == Cursor(4, block_hash(4))
    assert epochs(event_log) == [3]
