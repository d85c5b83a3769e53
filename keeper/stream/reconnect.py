"""What the two Apibara gRPC sources (DNA v2 and v1alpha2) share: where a stream starts,
and reconnecting with tenacity backoff until the stall deadline.

A source subclasses ``ReconnectingGrpcSource``, sets the attributes below in its
``__init__`` and implements one connection (``_stream_until_dropped``), what a lost
connection logs (``_disconnected``) and the error a dead stream ends with (``_stalled``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeAlias

import grpc.aio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from keeper.stream.errors import StreamDisconnectedError, StreamStalledError
from keeper.stream.eventlog import Cursor, EventLog

RECONNECT_WAIT = wait_random_exponential(multiplier=0.5, max=30.0, min=0.25)
Lost: TypeAlias = "grpc.aio.AioRpcError | StreamDisconnectedError"


class ReconnectingGrpcSource:
    _log: EventLog
    _start_block: int
    _stall_deadline_s: float
    _clock: Callable[[], float]
    _sleep: Callable[[float], Awaitable[None]]
    _on_progress: Callable[[str], None] | None
    _last_message: float

    def starting_cursor(self) -> Cursor | None:
        """The stored cursor; on a fresh store the block before ``start_block``."""
        stored = self._log.cursor()
        if stored is not None:
            return stored
        if self._start_block > 0:
            return Cursor(self._start_block - 1)
        return None

    async def run(self) -> None:
        """Stream until cancelled; StreamStalledError (or a fatal error) ends it."""
        self._last_message = self._clock()
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((grpc.aio.AioRpcError, StreamDisconnectedError)),
            wait=lambda state: min(RECONNECT_WAIT(state), self._remaining()),
            stop=lambda state: self._remaining() <= 0,
            before_sleep=self._reconnecting,
            retry_error_callback=self._give_up,
            sleep=self._sleep,
        )
        while True:  # one retry sequence per outage: it ends when a connection worked
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self._check_stall()  # the wait may have used up the deadline
                    await self._stream_until_dropped()

    async def _stream_until_dropped(self) -> None:
        raise NotImplementedError

    def _disconnected(self, exc: Lost, *, retry_in_s: float) -> None:
        raise NotImplementedError

    def _stalled(self) -> StreamStalledError:
        raise NotImplementedError

    def _reconnecting(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        assert isinstance(failure, grpc.aio.AioRpcError | StreamDisconnectedError)
        self._disconnected(failure, retry_in_s=state.upcoming_sleep)

    def _give_up(self, state: RetryCallState) -> NoReturn:
        failure = state.outcome.exception() if state.outcome is not None else None
        raise self._stalled() from failure

    def _remaining(self) -> float:
        return max(0.0, self._stall_deadline_s - (self._clock() - self._last_message))

    def _check_stall(self) -> None:
        if self._remaining() <= 0:
            raise self._stalled()

    def _progress(self, what: str) -> None:
        if self._on_progress is not None:
            self._on_progress(what)
