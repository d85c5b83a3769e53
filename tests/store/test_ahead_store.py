"""Proofs made ahead: one live proof per key, costs to the ledger exactly once, under the
job that used it or as discarded CPU that ``costs`` still counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.store.ahead import AheadKey, AheadStore, AheadStoreError, Proved, Traced
from keeper.store.cost_table import render
from keeper.store.db import Store, open_store
from keeper.store.jobs import JobStore
from keeper.store.ledger import Ledger

KEY = AheadKey("0xabc", 3, "0x1234", "0x99", 96)
OTHER_INPUTS = AheadKey("0xabc", 3, "0x5678", "0x99", 96)
TRACED = Traced('["1", "2"]', "/tmp/t", 4096, 2.0, 1.5)
PROVED = Proved("/tmp/t/proof.json", "0xfac7", 96, 123_456, 40.0, 70.25)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "k.sqlite3")


@pytest.fixture
def ahead(store: Store) -> AheadStore:
    return AheadStore(store, Ledger(store))


def _costs(store: Store) -> list[dict[str, object]]:
    return store.query("SELECT job_id, kind, prover, outcome, cpu_s FROM costs ORDER BY id")


def test_one_live_proof_per_key_and_a_discarded_one_frees_it(ahead: AheadStore) -> None:
    first = ahead.begin(KEY, "{}")
    assert first is not None and first.state == "proving"
    assert ahead.begin(KEY, "{}") is None  # a second prover of the same thing: refused
    assert ahead.begin(OTHER_INPUTS, "{}") is not None  # other inputs: their own proof
    assert ahead.discard(first, "inputs changed") is not None
    again = ahead.begin(KEY, "{}")
    assert again is not None and again.id != first.id
    assert ahead.find(KEY) == again


def test_a_used_proof_costs_its_job_once(ahead: AheadStore, store: Store) -> None:
    job = JobStore(store).create(0xABC, 3, "request")
    assert job is not None
    proof = ahead.begin(KEY, "{}")
    assert proof is not None
    proof = ahead.ready(ahead.traced(proof, TRACED), PROVED)
    used = ahead.use(proof, job.id)
    assert used.state == "used" and used.used_by == job.id
    assert ahead.use(proof, job.id) == used  # repeated after a crash: nothing twice
    assert ahead.used_by(job.id) == used
    assert _costs(store) == [
        {"job_id": job.id, "kind": "trace", "prover": None, "outcome": "ok", "cpu_s": 1.5},
        {"job_id": job.id, "kind": "proof", "prover": "stone", "outcome": "ok", "cpu_s": 70.25},
    ]
    assert ahead.discard(used, "too late") is None  # a used proof is never discarded
    assert ahead.begin(KEY, "{}") is None  # nor proved again


def test_a_discarded_proof_is_counted_by_costs(ahead: AheadStore, store: Store) -> None:
    proof = ahead.begin(KEY, "{}")
    assert proof is not None
    proof = ahead.ready(ahead.traced(proof, TRACED), PROVED)
    discarded = ahead.discard(proof, "the inputs changed")
    assert discarded is not None and discarded.state == "discarded"
    assert discarded.reason == "the inputs changed"
    assert ahead.discard(proof, "again") is None  # resolved once
    rows = _costs(store)
    assert [(r["job_id"], r["kind"], r["outcome"]) for r in rows] == [
        (None, "trace", "discarded"),
        (None, "proof", "discarded"),
    ]
    report = Ledger(store).report(None, atlantic_price_per_job_size={})
    assert report.total.discarded == 2
    assert report.total.discarded_cpu_s == pytest.approx(71.75)
    assert report.total.cpu_s == pytest.approx(71.75)
    assert report.total.failed == 0
    assert any("discarded" in line and "71.8 cpu s" in line for line in render(report))


def test_a_use_of_a_proof_that_is_not_ready_is_refused(ahead: AheadStore, store: Store) -> None:
    job = JobStore(store).create(0xABC, 3, "request")
    assert job is not None
    proof = ahead.begin(KEY, "{}")
    assert proof is not None
    with pytest.raises(AheadStoreError, match="not ready"):
        ahead.use(proof, job.id)
    assert _costs(store) == []


def test_proofs_left_proving_by_a_stopped_keeper_are_discarded_at_start(
    ahead: AheadStore, store: Store
) -> None:
    traced = ahead.begin(KEY, "{}")
    untraced = ahead.begin(OTHER_INPUTS, "{}")
    assert traced is not None and untraced is not None
    ahead.traced(traced, TRACED)
    stopped = ahead.interrupted()
    assert {p.id for p in stopped} == {traced.id, untraced.id}
    assert all(p.state == "discarded" and "interrupted" in str(p.reason) for p in stopped)
    # The trace's CPU is known; the killed prover's is not (recorded as unknown, not 0).
    assert _costs(store) == [
        {"job_id": None, "kind": "trace", "prover": None, "outcome": "discarded", "cpu_s": 1.5},
        {"job_id": None, "kind": "proof", "prover": "stone", "outcome": "discarded",
         "cpu_s": None},
    ]
    assert ahead.interrupted() == []
    assert ahead.counts() == {"discarded": 2}
