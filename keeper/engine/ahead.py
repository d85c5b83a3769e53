"""Proving the coming rebalance before it is due (issue 20: the prover off the critical path).

The inputs of a requested or scheduled rebalance are on-chain long before it is due. After
each look at the chain (a metrics snapshot, a governance change, an execution: the daemon's
``_decide``), while no job of the router's current epoch is open, ``consider`` makes sure
exactly one proof exists or is being made for what a job started now would prove: this
epoch, these inputs (their commitment), this program, the router's minimum security bits.

- It traces and proves in the background (a task beside the pipeline), with Stone only
  (never Atlantic: a query costs money, and a proof made ahead may never be used), at low
  priority (``jobs.prove_ahead_niceness``), then checks it with swiftness like any proof.
- A proof of other inputs is discarded at once, and one still being made is stopped (its
  Stone process killed): the router would refuse it, so it is never registered.
- The epoch's job takes it (``take``): if it is ready and proves exactly the job's inputs,
  the job skips its trace and proof; if it is still being made for those inputs, the job
  waits for it instead of starting a second prover; anything else is stopped first
  (``make_way``): at most one prover runs at a time.
- Its costs reach the ledger when it is resolved (keeper.store.ahead): under the job that
  used it, or as ``discarded`` CPU.

Registration stays with the job: nothing is sent for a proof until its rebalance is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from keeper.core.logs import get_logger
from keeper.ops.metrics import KeeperMetrics
from keeper.store.ahead import AheadKey, AheadProof, AheadStore, Proved, Traced
from prover.errors import ObsqraError
from prover.model import AllocationInputs, inputs_commitment
from prover.stone import StoneRunner
from prover.trace import TraceResult, generate_trace

_log = get_logger("keeper.engine.ahead")

# The local check of a proof (swiftness): (proof path, expected outputs) -> raises if bad.
Precheck = Callable[[Path, list[int]], Awaitable[None]]


class AheadProver:
    def __init__(
        self,
        *,
        store: AheadStore,
        router: int,
        program_hash: int,
        stone: StoneRunner,
        min_security_bits: int,
        work_dir: Path,
        precheck: Precheck | None,
        metrics: KeeperMetrics | None = None,
    ) -> None:
        self._store = store
        self._router = router
        self._program_hash = program_hash
        self._stone = stone
        self._bits = min_security_bits
        self._work_dir = work_dir
        self._precheck = precheck
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._task_proof: AheadProof | None = None

    @property
    def running(self) -> AheadProof | None:
        """The proof being made now, if any."""
        if self._task is None or self._task.done():
            return None
        return self._task_proof

    def key(self, epoch: int, inputs: AllocationInputs) -> AheadKey:
        """What a job of ``epoch`` started now on ``inputs`` would prove."""
        return AheadKey(
            router=hex(self._router),
            epoch=epoch,
            inputs_commitment=hex(inputs_commitment(inputs)),
            program_hash=hex(self._program_hash),
            min_security_bits=self._bits,
        )

    async def consider(self, epoch: int, inputs: AllocationInputs) -> None:
        """Called while no job of ``epoch`` is open: discard what no longer fits, start the
        proof of ``inputs`` when none exists (model-infeasible inputs have none)."""
        key = self.key(epoch, inputs)
        await self._discard_all_but(key, "the inputs changed before the rebalance was due")
        if self._store.find(key) is not None:
            return
        proof = self._store.begin(key, json.dumps(inputs.to_json()))
        if proof is None:  # made meanwhile by another task on this store
            return
        _log.info("ahead.proof_started", epoch=epoch, inputs_commitment=key.inputs_commitment,
                  proof_id=proof.id)
        self._task_proof = proof
        self._task = asyncio.create_task(self._make(proof, inputs), name=f"ahead-{proof.id}")

    async def take(self, job_id: str, epoch: int, inputs: AllocationInputs) -> AheadProof | None:
        """The ready proof of exactly ``inputs`` for the job (waiting for it when it is being
        made), marked used by the job; None when there is none (the job proves itself)."""
        key = self.key(epoch, inputs)
        used = self._store.used_by(job_id)
        if used is not None and used.key == key:
            return used  # taken before a crash: the job resumes with it
        await self._discard_all_but(key, "a job needs other inputs proved")
        running = self.running
        if running is not None and running.key == key:
            _log.info("ahead.job_waits_for_proof", proof_id=running.id, epoch=epoch)
            task = self._task
            assert task is not None
            await asyncio.shield(task)
        found = self._store.find(key)
        if found is None or found.state != "ready":
            return None
        proof = self._store.use(found, job_id)
        if self._metrics is not None:
            self._metrics.ahead_proof("used", 0.0)
        _log.info("ahead.proof_used", proof_id=proof.id, job_id=job_id)
        return proof

    def used_by(self, job_id: str) -> AheadProof | None:
        return self._store.used_by(job_id)

    async def make_way(self, reason: str) -> None:
        """Stop the proof being made (a job needs the prover): at most one prover runs."""
        running = self.running
        if running is not None:
            await self._stop(running, reason)

    async def close(self, reason: str) -> None:
        """Shutdown: stop the prover; the row is discarded (nothing half-made is kept)."""
        await self.make_way(reason)

    async def discard_all(self, reason: str) -> None:
        """Governance moved what a proof must satisfy (bits, program): none is kept."""
        await self.make_way(reason)
        for proof in self._store.live(hex(self._router)):
            self._discarded(self._store.discard(proof, reason))

    # ------------------------------------------------------------------ internals
    async def _discard_all_but(self, key: AheadKey, reason: str) -> None:
        running = self.running
        if running is not None and running.key != key:
            await self._stop(running, reason)
        for proof in self._store.live(hex(self._router)):
            if proof.key != key:
                self._discarded(self._store.discard(proof, reason))

    async def _stop(self, proof: AheadProof, reason: str) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # Stone's process group is killed and reaped before this returns
        self._discarded(self._store.discard(proof, reason))

    def _discarded(self, proof: AheadProof | None) -> None:
        if proof is None:
            return
        _log.info("ahead.proof_discarded", proof_id=proof.id, epoch=proof.epoch,
                  reason=proof.reason, cpu_s=round(proof.cpu_s, 3))
        if self._metrics is not None:
            self._metrics.ahead_proof("discarded", proof.cpu_s)

    async def _make(self, proof: AheadProof, inputs: AllocationInputs) -> None:
        out_dir = self._work_dir / "ahead" / str(proof.id)
        try:
            started = time.monotonic()
            result, trace_cpu = await asyncio.to_thread(_trace, inputs, out_dir / "trace")
            proof = self._store.traced(
                proof,
                Traced(
                    output_json=json.dumps([str(v) for v in result.output]),
                    trace_dir=str(result.dir),
                    n_steps=result.n_steps,
                    wall_s=time.monotonic() - started,
                    cpu_s=trace_cpu,
                ),
            )
            stone = await self._stone.prove(result.dir)
            if self._precheck is not None:
                await self._precheck(stone.proof_path, list(result.output))
        except ObsqraError as exc:
            # A proof that cannot be made ahead is the job's to make (and report) when due.
            _log.warning("ahead.proof_failed", proof_id=proof.id, code=exc.code, error=str(exc))
            self._discarded(self._store.discard(proof, f"{exc.code}: {exc}"))
            return
        self._store.ready(
            proof,
            Proved(
                proof_path=str(stone.proof_path),
                fact_hash=hex(stone.fact_hash),
                security_bits=stone.security_bits,
                proof_bytes=stone.proof_bytes,
                wall_s=stone.wall_seconds,
                cpu_s=stone.cpu_seconds,
            ),
        )
        if self._metrics is not None:
            self._metrics.ahead_proof("made", 0.0)
        _log.info("ahead.proof_ready", proof_id=proof.id, epoch=proof.epoch,
                  n_steps=result.n_steps, seconds=round(stone.wall_seconds, 1),
                  cpu_s=round(stone.cpu_seconds, 1))


def _trace(inputs: AllocationInputs, trace_dir: Path) -> tuple[TraceResult, float]:
    cpu = time.thread_time()
    result = generate_trace(inputs, trace_dir)
    return result, time.thread_time() - cpu
