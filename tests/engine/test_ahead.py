"""Proofs made ahead (keeper.engine.ahead), with faults injected through the Stone stand-in
(tests/fakes/stone): a proof whose inputs change while Stone runs is stopped (its process
group killed) and discarded, the new inputs get their own proof, at most one prover runs;
a proof that fails is discarded and left to the job. The real path (real Stone, Integrity,
a job that takes the proof) is tests/e2e/test_prove_ahead.py."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from keeper.engine.ahead import AheadProver
from keeper.ops.metrics import KeeperMetrics
from keeper.store.ahead import AheadStore
from keeper.store.db import Store, open_store
from keeper.store.jobs import JobStore
from keeper.store.ledger import Ledger
from prover.model import AllocationInputs, load_inputs
from prover.stone import StoneRunner
from tests.prover.test_stone import fake_settings
from tests.support.processes import live_processes

ROOT = Path(__file__).resolve().parents[2]
INPUTS = load_inputs(ROOT / "config" / "devnet_inputs.json")
ROUTER = INPUTS.router
PROGRAM_HASH = 0x99

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def other_inputs(inputs: AllocationInputs) -> AllocationInputs:
    first = dataclasses.replace(inputs.protocols[0], apy_bps=inputs.protocols[0].apy_bps + 100)
    return dataclasses.replace(inputs, protocols=(first, *inputs.protocols[1:]))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "k.sqlite3")


def make_prover(store: Store, tmp_path: Path, metrics: KeeperMetrics | None = None) -> AheadProver:
    return AheadProver(
        store=AheadStore(store, Ledger(store)),
        router=ROUTER,
        program_hash=PROGRAM_HASH,
        stone=StoneRunner(fake_settings(niceness=19)),
        min_security_bits=96,
        work_dir=tmp_path / "work",
        precheck=None,
        metrics=metrics,
    )


async def our_provers() -> list[int]:
    """Polls /proc until the stand-in prover started by this process runs."""
    for _ in range(2400):
        found = [p for p, parent in live_processes("cpu_air_prover").items()
                 if parent == os.getpid()]
        if found:
            return found
        await asyncio.sleep(0.05)  # polling /proc for the child: nothing to wait on
    raise AssertionError("the prover never started")


def _gone(pid: int) -> bool:
    return pid not in live_processes("cpu_air_prover")


async def test_inputs_changed_during_an_early_proof_stop_it_and_prove_the_new_ones(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STONE_MODE", "hang")
    metrics = KeeperMetrics()
    ahead = make_prover(store, tmp_path, metrics)
    await ahead.consider(3, INPUTS)
    await ahead.consider(3, INPUTS)  # the same inputs again: nothing new is started
    (first_pid,) = await our_provers()
    first = ahead.running
    assert first is not None and first.key == ahead.key(3, INPUTS)

    changed = other_inputs(INPUTS)
    await ahead.consider(3, changed)
    assert _gone(first_pid), "the early proof's prover is still running"
    rows = store.query("SELECT id, state, reason FROM ahead_proofs ORDER BY id")
    assert [(r["id"], r["state"]) for r in rows] == [(first.id, "discarded"),
                                                    (first.id + 1, "proving")]
    assert "inputs changed" in rows[0]["reason"]
    provers = await our_provers()
    assert first_pid not in provers and len(provers) == 1  # one prover at a time

    # The job of the epoch needs yet other inputs: the running proof makes way.
    job = JobStore(store).create(ROUTER, 3, "request")
    assert job is not None
    assert await ahead.take(job.id, 3, other_inputs(changed)) is None
    assert all(_gone(p) for p in provers)
    assert store.query("SELECT state FROM ahead_proofs WHERE state != 'discarded'") == []
    costs = store.query("SELECT job_id, kind, outcome, cpu_s FROM costs ORDER BY id")
    # Each: the trace's CPU, the killed prover's CPU unknown; no job pays for them.
    assert [(c["job_id"], c["kind"], c["outcome"]) for c in costs] == [
        (None, "trace", "discarded"), (None, "proof", "discarded")] * 2
    assert all(c["cpu_s"] is None for c in costs if c["kind"] == "proof")
    exposition = metrics.exposition().decode()
    assert 'keeper_ahead_proofs_total{outcome="discarded"} 2.0' in exposition


async def test_a_failed_early_proof_is_discarded_and_left_to_the_job(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STONE_MODE", "crash")
    ahead = make_prover(store, tmp_path)
    await ahead.consider(5, INPUTS)
    task_proof = ahead.running
    assert task_proof is not None
    job = JobStore(store).create(ROUTER, 5, "interval")
    assert job is not None
    # The job waits for the proof of its inputs; it failed: the job proves itself.
    assert await ahead.take(job.id, 5, INPUTS) is None
    (row,) = store.query("SELECT state, reason FROM ahead_proofs")
    assert row["state"] == "discarded" and row["reason"].startswith("prover_abort: ")
    assert ahead.running is None


async def test_shutdown_stops_the_early_proof(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STONE_MODE", "hang")
    ahead = make_prover(store, tmp_path)
    await ahead.consider(7, INPUTS)
    (pid,) = await our_provers()
    await ahead.close("the keeper stopped")
    assert _gone(pid)
    (row,) = store.query("SELECT state, reason FROM ahead_proofs")
    assert (row["state"], row["reason"]) == ("discarded", "the keeper stopped")
