"""``/healthz`` and ``/metrics`` on a loopback port (``[health]`` in the config).

Served by aiohttp's web server in the daemon's event loop; the handlers only read a
:class:`HealthState` that the loop updates in place and the metrics registry. Only GET
is answered (405 otherwise, 404 on other paths). A connection that sends no complete
request within ``idle_timeout_s`` (also the keep-alive limit) is closed, and request
lines and header fields are bounded, so a slow or chatty client cannot hold anything up.

Status (``/healthz``; also in the JSON body's ``reasons``):

- ``failing`` (HTTP 503): the loop reported a fatal condition; or the stream has not
  advanced for longer than ``stream.stall_deadline_s`` (the keeper is about to exit and
  be restarted); or provers are known and none is available (nothing can be proven).
- ``degraded`` (HTTP 200): the stream has not advanced for half the stall deadline; or
  it lags the chain head by more than ``lag_degraded_blocks``; or a user of the node (a
  stream poll, the pipeline's reads, a job step) got no answer from it and has not heard
  from it since; or the current epoch's job failed or is parked; or Atlantic is out of
  credit; or some prover is unavailable (fallback in use); or the account's STRK pays
  for fewer than ``funds.min_rebalances`` rebalances; or a job waits for funds
  (``insufficient_funds``: it sends nothing it cannot finish).
- ``ok`` (HTTP 200) otherwise.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST

from keeper.core.config import HealthConfig
from keeper.core.errors import ConfigError
from keeper.core.logs import get_logger
from keeper.ops.metrics import KeeperMetrics
from keeper.stream.eventlog import Cursor, StreamPosition

HealthStatus = Literal["ok", "degraded", "failing"]

_log = get_logger("keeper.ops.health")


@dataclass
class HealthState:
    """What the daemon loop knows about itself; times are Unix seconds."""

    started_at: float = field(default_factory=time.time)
    stream_lag_blocks: int | None = None
    # The stream advanced (new block or cursor move): what the stall deadline watches.
    # Events themselves can be hours apart on a quiet router, so they are not the signal.
    last_stream_progress_at: float | None = None
    last_event_at: float | None = None
    last_successful_job_at: float | None = None
    provers: dict[str, bool] = field(default_factory=dict)
    # Set by the loop just before it exits on a fatal condition (store unwritable…).
    fatal: str | None = None
    # The node has not answered since then: the first of the stream, the pipeline's reads
    # and the job steps that got no answer reports it, and it lasts until each of them has
    # heard from the node again (the loop rides outages out up to the stall deadline).
    node_unreachable_since: float | None = None
    # Why the current epoch's job is not making progress: failed and waiting for its next
    # run, or parked until the operator retries it. Each line says what to do.
    job_problems: list[str] = field(default_factory=list)
    # Atlantic refuses queries for lack of credit: what it said, since when.
    atlantic_out_of_credit: str | None = None
    # A due rebalance held back by a pending governance change (the change and its eta).
    # Shown, not degrading: it is the timelock working, and it ends with the change.
    waiting_for_governance: str | None = None
    # The account's STRK pays for fewer rebalances than funds.min_rebalances (in words).
    funds_low: str | None = None
    # A job sends nothing: the balance does not pay for all its remaining transactions.
    funds_waiting: str | None = None
    # The last balance reading (keeper.engine.funds.FundsStatus.as_json), for the body.
    funds: dict[str, Any] | None = None
    # Where the stream stands (source; stored, finalized and head cursors), kept current
    # by the event log and the source; shown on /healthz and /metrics.
    stream: StreamPosition | None = None


@dataclass(frozen=True)
class HealthThresholds:
    stall_deadline_s: float = 300.0
    lag_degraded_blocks: int = 10


def assess(
    state: HealthState, thresholds: HealthThresholds, now: float
) -> tuple[HealthStatus, list[str]]:
    """The status and the reasons for it (empty when ok). Pure."""
    failing: list[str] = []
    degraded: list[str] = []
    if state.fatal:
        failing.append(f"fatal: {state.fatal}")
    since = state.last_stream_progress_at
    silent_s = now - (since if since is not None else state.started_at)
    what = "stream has not advanced" if since is not None else "stream has not started"
    if silent_s > thresholds.stall_deadline_s:
        failing.append(
            f"{what} for {silent_s:.0f} s (stall deadline {thresholds.stall_deadline_s:g} s)"
        )
    elif silent_s > thresholds.stall_deadline_s / 2:
        degraded.append(f"{what} for {silent_s:.0f} s (over half the stall deadline)")
    if state.node_unreachable_since is not None:
        down_s = now - state.node_unreachable_since
        degraded.append(f"the node has not answered for {down_s:.0f} s")
    degraded.extend(state.job_problems)
    if state.funds_waiting:
        degraded.append(state.funds_waiting)
    if state.funds_low:
        degraded.append(state.funds_low)
    if state.atlantic_out_of_credit:
        degraded.append(state.atlantic_out_of_credit)
    lag = state.stream_lag_blocks
    if lag is None and state.stream is not None:
        lag = state.stream.lag_blocks  # the stream's own head when the node's is unknown
    if lag is not None and lag > thresholds.lag_degraded_blocks:
        degraded.append(f"stream lags the chain head by {lag} blocks")
    down = sorted(name for name, up in state.provers.items() if not up)
    if state.provers and len(down) == len(state.provers):
        failing.append(f"no prover available ({', '.join(down)})")
    elif down:
        degraded.append(f"prover unavailable: {', '.join(down)}")
    if failing:
        return "failing", failing + degraded
    if degraded:
        return "degraded", degraded
    return "ok", []


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _cursor(cursor: Cursor | None) -> dict[str, Any] | None:
    if cursor is None:
        return None
    block_hash = None if cursor.block_hash is None else hex(cursor.block_hash)
    return {"block_number": cursor.block_number, "block_hash": block_hash}


def stream_report(position: StreamPosition | None) -> dict[str, Any] | None:
    """The stream's part of /healthz (and of ``status --json``). Pure."""
    if position is None:
        return None
    return {
        "source": position.source,
        "cursor": _cursor(position.cursor),
        "finalized": _cursor(position.finalized),
        "head": _cursor(position.head),
        "lag_blocks": position.lag_blocks,
    }


def health_report(state: HealthState, thresholds: HealthThresholds, now: float) -> dict[str, Any]:
    """The ``/healthz`` JSON body. Pure."""
    status, reasons = assess(state, thresholds, now)
    return {
        "status": status,
        "reasons": reasons,
        "stream_lag_blocks": state.stream_lag_blocks,
        "stream": stream_report(state.stream),
        "last_stream_progress_at": _iso(state.last_stream_progress_at),
        "last_event_at": _iso(state.last_event_at),
        "last_successful_job_at": _iso(state.last_successful_job_at),
        "provers": {name: {"available": up} for name, up in sorted(state.provers.items())},
        "jobs": state.job_problems,
        "waiting_for_governance": state.waiting_for_governance,
        "funds": None if state.funds is None else {**state.funds, "waiting": state.funds_waiting},
        "uptime_s": round(max(now - state.started_at, 0.0), 1),
    }


_NOT_FOUND = "not found; try /healthz or /metrics\n"


class _QuietBadRequests(logging.Filter):
    """A malformed request already got its 400: no error and traceback in the journal for
    it (aiohttp's would quote the client's request line or headers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


_http_log = logging.getLogger("keeper.ops.health.http")
_http_log.addFilter(_QuietBadRequests())


@web.middleware
async def _get_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """405 for any method but GET (whatever the path), and a 404 that names the routes."""
    if request.method != "GET":
        raise web.HTTPMethodNotAllowed(
            request.method, ["GET"], text=f"method {request.method} not allowed\n"
        )
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.Response(status=404, text=_NOT_FOUND)


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Cache-Control"] = "no-store"  # a scraper must never see a cached status


class HealthServer:
    """Serves ``/healthz`` and ``/metrics``; use as ``async with HealthServer(...) as s``."""

    def __init__(
        self,
        state: HealthState,
        metrics: KeeperMetrics,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        thresholds: HealthThresholds | None = None,
        idle_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``idle_timeout_s``: a connection without a complete request for this long is
        closed (a silent client, or an idle keep-alive one)."""
        self.state = state
        self._metrics = metrics
        self._host = host
        self._requested_port = port
        self._thresholds = thresholds or HealthThresholds()
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_config(
        cls,
        config: HealthConfig,
        state: HealthState,
        metrics: KeeperMetrics,
        *,
        stall_deadline_s: float,
    ) -> HealthServer:
        return cls(
            state,
            metrics,
            host=config.host,
            port=config.port,
            thresholds=HealthThresholds(stall_deadline_s=stall_deadline_s),
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        addresses = [] if self._runner is None else self._runner.addresses
        if not addresses:
            raise RuntimeError("the health server is not started")
        port: int = addresses[0][1]
        return port

    def set_thresholds(self, thresholds: HealthThresholds) -> None:
        """New thresholds after a config reload."""
        self._thresholds = thresholds

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[_get_only])
        app.router.add_get("/healthz", self._healthz, allow_head=False)
        app.router.add_get("/metrics", self._exposition, allow_head=False)
        app.on_response_prepare.append(_no_store)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(
            self._app(),
            access_log=None,  # one line per scrape would drown the keeper's own lines
            logger=_http_log,
            keepalive_timeout=self._idle_timeout_s,
            shutdown_timeout=self._idle_timeout_s,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._requested_port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                [
                    f"health: cannot listen on {self._host}:{self._requested_port}: "
                    f"{exc.strerror or exc} (another process uses the port? change health.port "
                    "or set health.enabled = false)"
                ]
            ) from exc
        self._runner = runner
        _log.info("health_listening", host=self._host, port=self.port)

    async def close(self) -> None:
        """Stop listening, close every connection (idle keep-alive ones included)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _healthz(self, request: web.Request) -> web.Response:
        report = health_report(self.state, self._thresholds, self._clock())
        return web.Response(
            status=503 if report["status"] == "failing" else 200,
            body=json.dumps(report, separators=(",", ":")).encode(),
            content_type="application/json",
        )

    async def _exposition(self, request: web.Request) -> web.Response:
        if self.state.stream is not None:
            self._metrics.stream_position(self.state.stream)
        # CONTENT_TYPE_LATEST carries parameters (version, charset): set as a raw header.
        return web.Response(
            body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
