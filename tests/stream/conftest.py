"""Fixtures for the event-stream tests: a fresh store and the two contract addresses."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# `.venv/bin/pytest` (unlike `python -m pytest`) does not put the repo root on sys.path,
# and these tests import the shared stand-ins as `tests.fakes…` / `tests.support.devnet`.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from keeper.store.db import Store, open_store  # noqa: E402
from keeper.stream.eventlog import EventLog  # noqa: E402
from tests.stream.payloads import ADDRESSES  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "keeper.sqlite3") as opened:
        yield opened


@pytest.fixture
def event_log(store: Store) -> EventLog:
    return EventLog(store, source="test", addresses=ADDRESSES)
