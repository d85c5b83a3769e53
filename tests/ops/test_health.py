from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CONTENT_TYPE_LATEST
from test_metrics import SERIES

from keeper.core.config import HealthConfig
from keeper.core.errors import ConfigError
from keeper.ops.health import HealthServer, HealthState, HealthThresholds, assess, health_report
from keeper.ops.metrics import KeeperMetrics
from keeper.stream.eventlog import Cursor, StreamPosition

NOW = 1_700_000_000.0
THRESHOLDS = HealthThresholds(stall_deadline_s=300.0, lag_degraded_blocks=10)


def healthy_state() -> HealthState:
    return HealthState(
        started_at=NOW - 3600,
        stream_lag_blocks=1,
        last_stream_progress_at=NOW - 5,
        last_event_at=NOW - 600,
        last_successful_job_at=NOW - 1800,
        provers={"stone": True, "atlantic": True},
    )


# --- the pure assessment -----------------------------------------------------------------


def test_healthy_is_ok() -> None:
    assert assess(healthy_state(), THRESHOLDS, NOW) == ("ok", [])


def test_stream_silent_past_the_deadline_is_failing() -> None:
    state = healthy_state()
    state.last_stream_progress_at = NOW - 301
    status, reasons = assess(state, THRESHOLDS, NOW)
    assert status == "failing"
    assert "stream has not advanced for 301 s" in reasons[0]


def test_stream_never_started_past_the_deadline_is_failing() -> None:
    state = HealthState(started_at=NOW - 400)
    status, reasons = assess(state, THRESHOLDS, NOW)
    assert status == "failing"
    assert "stream has not started" in reasons[0]


def test_just_started_is_ok() -> None:
    assert assess(HealthState(started_at=NOW - 1), THRESHOLDS, NOW) == ("ok", [])


def test_stream_silent_past_half_the_deadline_is_degraded() -> None:
    state = healthy_state()
    state.last_stream_progress_at = NOW - 200
    assert assess(state, THRESHOLDS, NOW)[0] == "degraded"


def test_lag_over_the_threshold_is_degraded() -> None:
    state = healthy_state()
    state.stream_lag_blocks = 11
    status, reasons = assess(state, THRESHOLDS, NOW)
    assert (status, reasons) == ("degraded", ["stream lags the chain head by 11 blocks"])


def test_one_prover_down_is_degraded_all_down_is_failing() -> None:
    state = healthy_state()
    state.provers = {"stone": False, "atlantic": True}
    assert assess(state, THRESHOLDS, NOW) == ("degraded", ["prover unavailable: stone"])
    state.provers = {"stone": False, "atlantic": False}
    assert assess(state, THRESHOLDS, NOW) == ("failing", ["no prover available (atlantic, stone)"])


def test_fatal_is_failing() -> None:
    state = healthy_state()
    state.fatal = "store unwritable"
    assert assess(state, THRESHOLDS, NOW) == ("failing", ["fatal: store unwritable"])


@given(
    silent=st.floats(min_value=0, max_value=10_000),
    lag=st.none() | st.integers(min_value=0, max_value=1000),
    provers=st.dictionaries(st.sampled_from(["stone", "atlantic", "dev"]), st.booleans()),
)
def test_status_follows_the_rules(silent: float, lag: int | None, provers: dict[str, bool]) -> None:
    state = HealthState(
        started_at=NOW - 10_000,
        stream_lag_blocks=lag,
        last_stream_progress_at=NOW - silent,
        provers=provers,
    )
    status, reasons = assess(state, THRESHOLDS, NOW)
    fails = silent > 300 or (bool(provers) and not any(provers.values()))
    degrades = silent > 150 or (lag is not None and lag > 10) or not all(provers.values())
    expected = "failing" if fails else "degraded" if degrades else "ok"
    assert status == expected
    assert (reasons == []) == (status == "ok")


def test_report_body() -> None:
    body = health_report(healthy_state(), THRESHOLDS, NOW)
    assert body == {
        "status": "ok",
        "reasons": [],
        "stream_lag_blocks": 1,
        "stream": None,
        "last_stream_progress_at": "2023-11-14T22:13:15+00:00",
        "last_event_at": "2023-11-14T22:03:20+00:00",
        "last_successful_job_at": "2023-11-14T21:43:20+00:00",
        "provers": {"atlantic": {"available": True}, "stone": {"available": True}},
        "jobs": [],
        "waiting_for_governance": None,
        "funds": None,
        "uptime_s": 3600.0,
    }


def test_report_before_anything_happened() -> None:
    body = health_report(HealthState(started_at=NOW), THRESHOLDS, NOW)
    assert body["last_event_at"] is None
    assert body["last_successful_job_at"] is None
    assert body["stream_lag_blocks"] is None
    assert body["provers"] == {}


def test_report_shows_where_the_stream_stands() -> None:
    state = healthy_state()
    state.stream = StreamPosition(
        "dna", cursor=Cursor(95, 0xB95), finalized=Cursor(80, 0xB80), head=Cursor(100, 0xB100)
    )
    assert health_report(state, THRESHOLDS, NOW)["stream"] == {
        "source": "dna",
        "cursor": {"block_number": 95, "block_hash": "0xb95"},
        "finalized": {"block_number": 80, "block_hash": "0xb80"},
        "head": {"block_number": 100, "block_hash": "0xb100"},
        "lag_blocks": 5,
    }


def test_the_streams_own_lag_degrades_when_the_nodes_is_unknown() -> None:
    state = healthy_state()
    state.stream_lag_blocks = None
    state.stream = StreamPosition("dna", cursor=Cursor(50), head=Cursor(80))
    assert assess(state, THRESHOLDS, NOW) == (
        "degraded", ["stream lags the chain head by 30 blocks"]
    )


# --- the server --------------------------------------------------------------------------


def server(state: HealthState, metrics: KeeperMetrics | None = None, **kw: Any) -> HealthServer:
    return HealthServer(
        state, metrics or KeeperMetrics(), port=0, thresholds=THRESHOLDS, clock=lambda: NOW, **kw
    )


def client(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10)


async def test_healthz_ok() -> None:
    async with server(healthy_state()) as s, client(s.port) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == health_report(healthy_state(), THRESHOLDS, NOW)


async def test_healthz_failing_is_503_and_follows_the_live_state() -> None:
    state = healthy_state()
    async with server(state) as s, client(s.port) as http:
        assert (await http.get("/healthz")).status_code == 200
        state.last_stream_progress_at = NOW - 1000  # the loop updates the state in place
        response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == "failing"


async def test_healthz_degraded_is_200() -> None:
    state = healthy_state()
    state.provers["stone"] = False
    async with server(state) as s, client(s.port) as http:
        response = await http.get("/healthz?verbose=1")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"


async def test_metrics_exposes_every_series() -> None:
    metrics = KeeperMetrics()
    metrics.event_ingested("RebalanceExecuted")
    metrics.job_state_counts({"done": 1})
    metrics.proof_done("stone", 3.0)
    metrics.fee_paid("submit_allocation", 10.0, "fri")
    metrics.fallback("stone", "atlantic")
    metrics.prover_available("stone", True)
    metrics.cost_per_allocation("stone", 285 * 10**15, 280 * 10**15)  # labelled: once costed
    state = healthy_state()
    state.stream = StreamPosition("rpc", cursor=Cursor(7))
    async with server(state, metrics) as s, client(s.port) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert response.headers["cache-control"] == "no-store"
    for name in SERIES:
        assert f"\n{name}" in response.text or response.text.startswith(name), name
    assert 'keeper_events_total{kind="RebalanceExecuted"} 1.0' in response.text


async def test_metrics_show_the_streams_position_at_scrape_time() -> None:
    state = healthy_state()
    state.stream = StreamPosition("dna", cursor=Cursor(95), finalized=Cursor(80))
    async with server(state, KeeperMetrics()) as s, client(s.port) as http:
        first = (await http.get("/metrics")).text
        state.stream.cursor, state.stream.head = Cursor(96), Cursor(99)
        second = (await http.get("/metrics")).text
    assert "keeper_stream_cursor_block 95.0" in first
    assert "keeper_stream_head_block NaN" in first  # not known yet
    assert 'keeper_stream_source_info{source="dna"} 1.0' in first
    assert "keeper_stream_cursor_block 96.0" in second
    assert "keeper_stream_head_block 99.0" in second
    assert "keeper_stream_finalized_block 80.0" in second


@pytest.mark.parametrize("path", ["/admin", "/", "/healthz/", "/metrics.txt"])
async def test_unknown_path_is_404(path: str) -> None:
    async with server(healthy_state()) as s, client(s.port) as http:
        response = await http.get(path)
    assert response.status_code == 404
    assert response.text == "not found; try /healthz or /metrics\n"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/admin"])
async def test_other_methods_are_405(method: str, path: str) -> None:
    async with server(healthy_state()) as s, client(s.port) as http:
        response = await http.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


async def test_a_silent_client_does_not_block_others_and_is_cut_off() -> None:
    async with server(healthy_state(), idle_timeout_s=0.5) as s:
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", s.port)
        slow_writer.write(b"GET /heal")  # and then nothing more
        await slow_writer.drain()
        async with client(s.port) as http:
            response = await http.get("/healthz")
        assert response.status_code == 200
        # The server gives up on the silent one and closes it: read returns at EOF.
        answer = await asyncio.wait_for(slow_reader.read(), 10)
        slow_writer.close()
        await slow_writer.wait_closed()
    assert answer == b""


async def test_a_malformed_request_gets_400_and_no_traceback_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    header = b"Authorization: Bearer " + b"t0ken" * 2000 + b"\r\n"  # over the line limit
    with caplog.at_level(logging.DEBUG):
        async with server(healthy_state()) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(b"GET /healthz HTTP/1.1\r\n" + header + b"\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            await writer.wait_closed()
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert "t0ken" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_closing_the_server_drops_idle_connections() -> None:
    async with server(healthy_state(), idle_timeout_s=60) as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        await writer.drain()
        # And one kept alive after a complete request.
        kept = client(s.port)
        assert (await kept.get("/healthz")).status_code == 200
    # The server closed with clients still connected: they see EOF, not a hang.
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    with pytest.raises(httpx.TransportError):
        await kept.get("/healthz")
    await kept.aclose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_from_config_listens_on_the_configured_loopback_address() -> None:
    port = free_port()
    health = HealthServer.from_config(
        HealthConfig(host="127.0.0.1", port=port), healthy_state(), KeeperMetrics(),
        stall_deadline_s=300,
    )
    async with health, client(port) as http:
        assert health.port == port
        assert (await http.get("/metrics")).status_code == 200
    with pytest.raises(httpx.ConnectError):  # closed: nothing listens any more
        async with client(port) as http:
            await http.get("/healthz")


async def test_port_in_use_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = HealthConfig(port=port)
        health = HealthServer.from_config(
            config, healthy_state(), KeeperMetrics(), stall_deadline_s=300
        )
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}") as info:
            await health.start()
    assert "change health.port or set health.enabled = false" in str(info.value)
    with pytest.raises(RuntimeError, match="not started"):
        _ = health.port


async def test_port_requires_a_started_server() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = server(healthy_state()).port


def test_outages_failed_epochs_and_atlantic_credit_degrade_with_their_reasons() -> None:
    state = healthy_state()
    state.node_unreachable_since = NOW - 42
    state.job_problems = ["epoch 7 is parked after run 3 (reverted: x); ... jobs retry 7"]
    state.atlantic_out_of_credit = "Atlantic is out of credit since 2030-01-01: top up"
    status, reasons = assess(state, THRESHOLDS, NOW)
    assert status == "degraded"
    assert reasons == [
        "the node has not answered for 42 s",
        "epoch 7 is parked after run 3 (reverted: x); ... jobs retry 7",
        "Atlantic is out of credit since 2030-01-01: top up",
    ]
    assert health_report(state, THRESHOLDS, NOW)["jobs"] == state.job_problems


def test_a_rebalance_held_by_governance_is_shown_and_does_not_degrade() -> None:
    state = healthy_state()
    state.waiting_for_governance = "not due: waiting for governance change max_single_bps"
    assert assess(state, THRESHOLDS, NOW) == ("ok", [])
    body = health_report(state, THRESHOLDS, NOW)
    assert body["waiting_for_governance"] == state.waiting_for_governance
    assert health_report(healthy_state(), THRESHOLDS, NOW)["waiting_for_governance"] is None
