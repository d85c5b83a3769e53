"""The gauges the shipped alert rules watch, as the daemon sets them from the store:
the current epoch's job failing (waiting for its next run) or parked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keeper.core.config import load_config
from keeper.engine.daemon import Keeper
from keeper.store.db import open_store
from keeper.store.jobs import JobStore
from tests.ops.test_metrics import value

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "keeper.example.toml"


@pytest.mark.parametrize(
    ("retry_in", "failing", "parked"), [(timedelta(hours=1), 1, 0), (None, 0, 1)]
)
def test_the_current_epochs_failed_job_is_failing_or_parked(
    tmp_path: Path, retry_in: timedelta | None, failing: int, parked: int
) -> None:
    keeper = Keeper(load_config(EXAMPLE, {}), environ={}, config_path=None)
    keeper.jobs = JobStore(open_store(tmp_path / "k.sqlite3"))
    router = int(keeper.cfg.chain.router_address, 16)
    job = keeper.jobs.create(router, 5, "interval")
    assert job is not None
    retry_at = None if retry_in is None else datetime.now(UTC) + retry_in
    keeper.jobs.fail(job, "reverted", "x", retry_after=retry_at, paid=retry_in is None)
    keeper._run_failed_job_again(5)
    assert value(keeper.metrics, "keeper_jobs_failing") == failing
    assert value(keeper.metrics, "keeper_jobs_parked") == parked
    keeper._run_failed_job_again(6)  # the epoch moved on: nothing of the current one fails
    assert value(keeper.metrics, "keeper_jobs_failing") == 0
    assert value(keeper.metrics, "keeper_jobs_parked") == 0
