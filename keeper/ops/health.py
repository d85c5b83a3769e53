"""``/healthz`` and ``/metrics`` on a loopback port (``[health]`` in the config).

A deliberately small HTTP/1.1 server on ``asyncio.start_server``: one GET per connection,
``Connection: close``, a bounded request head and a read timeout, so neither a slow nor
a chatty client can hold the keeper up. It runs in the daemon's event loop and reads a
:class:`HealthState` that the loop updates in place.

Status (``/healthz``; also in the JSON body's ``reasons``):

- ``failing`` (HTTP 503): the loop reported a fatal condition; or the stream has not
  advanced for longer than ``stream.stall_deadline_s`` (the keeper is about to exit and
  be restarted); or provers are known and none is available (nothing can be proven).
- ``degraded`` (HTTP 200): the stream has not advanced for half the stall deadline; or
  it lags the chain head by more than ``lag_degraded_blocks``; or some prover is
  unavailable (fallback in use).
- ``ok`` (HTTP 200) otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST

from keeper.core.config import HealthConfig
from keeper.core.errors import ConfigError
from keeper.core.logs import get_logger
from keeper.ops.metrics import KeeperMetrics

HealthStatus = Literal["ok", "degraded", "failing"]

_log = get_logger("keeper.ops.health")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


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
    lag = state.stream_lag_blocks
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


def health_report(state: HealthState, thresholds: HealthThresholds, now: float) -> dict[str, Any]:
    """The ``/healthz`` JSON body. Pure."""
    status, reasons = assess(state, thresholds, now)
    return {
        "status": status,
        "reasons": reasons,
        "stream_lag_blocks": state.stream_lag_blocks,
        "last_stream_progress_at": _iso(state.last_stream_progress_at),
        "last_event_at": _iso(state.last_event_at),
        "last_successful_job_at": _iso(state.last_successful_job_at),
        "provers": {name: {"available": up} for name, up in sorted(state.provers.items())},
        "uptime_s": round(max(now - state.started_at, 0.0), 1),
    }


def _response(status: int, body: bytes, content_type: str, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _text(status: int, message: str, extra: str = "") -> bytes:
    return _response(status, (message + "\n").encode(), "text/plain; charset=utf-8", extra)


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
        read_timeout_s: float = 5.0,
        max_request_bytes: int = 8192,
        max_connections: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self._metrics = metrics
        self._host = host
        self._requested_port = port
        self._thresholds = thresholds or HealthThresholds()
        self._read_timeout_s = read_timeout_s
        self._max_request_bytes = max_request_bytes
        self._max_connections = max_connections
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

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
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the health server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def set_thresholds(self, thresholds: HealthThresholds) -> None:
        """New thresholds after a config reload."""
        self._thresholds = thresholds

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._handle, self._host, self._requested_port, limit=self._max_request_bytes
            )
        except OSError as exc:
            raise ConfigError(
                [
                    f"health: cannot listen on {self._host}:{self._requested_port}: "
                    f"{exc.strerror or exc} (another process uses the port? change health.port "
                    "or set health.enabled = false)"
                ]
            ) from exc
        _log.info("health_listening", host=self._host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if len(self._handlers) > self._max_connections:
                response = _text(503, "too many connections")
            else:
                response = await self._respond(reader)
            if response:
                writer.write(response)
                async with asyncio.timeout(self._read_timeout_s):
                    await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stopped reading; nothing to tell it
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(self._read_timeout_s):
                    await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> bytes:
        try:
            async with asyncio.timeout(self._read_timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            return _text(408, "request not received in time")
        except asyncio.LimitOverrunError:
            return _text(431, f"request head larger than {self._max_request_bytes} bytes")
        except asyncio.IncompleteReadError:
            return b""  # closed before a full request: nobody to answer
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _text(400, "malformed request line")
        method, target, _version = parts
        if method != "GET":
            return _text(405, f"method {method} not allowed", "Allow: GET\r\n")
        path = target.split("?", 1)[0]
        if path == "/healthz":
            report = health_report(self.state, self._thresholds, self._clock())
            body = json.dumps(report, separators=(",", ":")).encode()
            status = 503 if report["status"] == "failing" else 200
            return _response(status, body, "application/json")
        if path == "/metrics":
            return _response(200, self._metrics.exposition(), CONTENT_TYPE_LATEST)
        return _text(404, "not found; try /healthz or /metrics")
