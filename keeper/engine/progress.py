"""A proof takes a minute or more: while one runs, a progress line every few seconds
(``job.proof_progress``: what the prover is doing, how long it has run, how long the
recent proofs took), so an operator (and the demo) never watches a silent minute."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from keeper.core.logs import get_logger

_log = get_logger("keeper.engine.progress")

PROGRESS_INTERVAL_S = 10.0


@contextlib.asynccontextmanager
async def proof_progress(
    phase: Callable[[], str],
    expected_s: float | None,
    *,
    interval_s: float = PROGRESS_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[None]:
    """Log ``job.proof_progress`` every ``interval_s`` until the block ends."""
    started = clock()
    _log.info(
        "job.proof_started",
        phase=phase(),
        expected_s=None if expected_s is None else round(expected_s),
    )

    async def tick() -> None:
        while True:
            await asyncio.sleep(interval_s)
            _log.info(
                "job.proof_progress",
                phase=phase(),
                elapsed_s=round(clock() - started),
                expected_s=None if expected_s is None else round(expected_s),
            )

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
