"""Proofs made ahead of a due rebalance, one row each (keeper.engine.ahead makes them).

    proving → ready → used (by the epoch's job)
        proving | ready → discarded (the inputs changed, the keeper stopped during it,
                                     the prover failed, governance moved the bits)

At most one *live* row (proving, ready or used) per (router, epoch, inputs commitment,
program hash, minimum security bits): a unique index says so, so two tasks (or two keeper
processes on one store) cannot prove the same thing twice. A discarded row frees its key.

The CPU a proof cost is kept on its row until it is resolved, then written to the cost
ledger in the same transaction as the resolution: under the job that used it (so the
allocation's cost includes it), or with no job and outcome ``discarded`` (so ``costs``
still counts it). A row left ``proving`` by a keeper that died is discarded at the next
start: its prover died with it (PR_SET_PDEATHSIG), and its CPU was not measured.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

import sqlite_utils

from keeper.core.errors import KeeperError
from keeper.store.db import Store
from keeper.store.ledger import CostEntry, Ledger

AheadState = Literal["proving", "ready", "used", "discarded"]
LIVE: tuple[AheadState, ...] = ("proving", "ready", "used")


class AheadStoreError(KeeperError):
    code = "ahead_store"


@dataclass(frozen=True)
class AheadKey:
    """What one proof made ahead proves: the router's epoch on exactly these inputs, with
    this program, for this minimum of security bits."""

    router: str  # 0x-hex
    epoch: int
    inputs_commitment: str  # 0x-hex
    program_hash: str  # 0x-hex
    min_security_bits: int


@dataclass(frozen=True)
class AheadProof:
    id: int
    router: str
    epoch: int
    inputs_commitment: str
    program_hash: str
    min_security_bits: int
    state: AheadState
    inputs_json: str
    output_json: str | None
    trace_dir: str | None
    n_steps: int | None
    proof_path: str | None
    fact_hash: str | None
    security_bits: int | None
    proof_bytes: int | None
    trace_wall_s: float | None
    trace_cpu_s: float | None
    proof_wall_s: float | None
    proof_cpu_s: float | None
    used_by: str | None
    reason: str | None
    created_at: str
    finished_at: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AheadProof:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def key(self) -> AheadKey:
        return AheadKey(
            self.router, self.epoch, self.inputs_commitment, self.program_hash,
            self.min_security_bits,
        )

    @property
    def cpu_s(self) -> float:
        return (self.trace_cpu_s or 0.0) + (self.proof_cpu_s or 0.0)


@dataclass(frozen=True)
class Traced:
    output_json: str
    trace_dir: str
    n_steps: int
    wall_s: float
    cpu_s: float


@dataclass(frozen=True)
class Proved:
    proof_path: str
    fact_hash: str
    security_bits: int
    proof_bytes: int
    wall_s: float
    cpu_s: float


class AheadStore:
    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock

    def _now(self) -> str:
        return self._clock().isoformat(timespec="milliseconds")

    def get(self, proof_id: int) -> AheadProof:
        rows = self._store.query("SELECT * FROM ahead_proofs WHERE id = ?", (proof_id,))
        if not rows:
            raise AheadStoreError(f"no proof made ahead with id {proof_id}")
        return AheadProof.from_row(rows[0])

    def live(self, router: str) -> list[AheadProof]:
        """The router's proofs that are being made or wait to be used."""
        rows = self._store.query(
            "SELECT * FROM ahead_proofs WHERE router = ? AND state IN ('proving', 'ready') "
            "ORDER BY id",
            (router,),
        )
        return [AheadProof.from_row(r) for r in rows]

    def find(self, key: AheadKey) -> AheadProof | None:
        """The live proof of ``key`` (proving, ready or used), if any."""
        rows = self._store.query(
            "SELECT * FROM ahead_proofs WHERE router = ? AND epoch = ? AND inputs_commitment = ? "
            "AND program_hash = ? AND min_security_bits = ? AND state IN ('proving', 'ready', "
            "'used')",
            (key.router, key.epoch, key.inputs_commitment, key.program_hash,
             key.min_security_bits),
        )
        return AheadProof.from_row(rows[0]) if rows else None

    def begin(self, key: AheadKey, inputs_json: str) -> AheadProof | None:
        """A new ``proving`` row for ``key``; None when a live one exists already."""
        try:
            with self._store.transaction() as db:
                cursor = db.execute(
                    "INSERT INTO ahead_proofs (router, epoch, inputs_commitment, program_hash, "
                    "min_security_bits, state, inputs_json, created_at) "
                    "VALUES (?, ?, ?, ?, ?, 'proving', ?, ?)",
                    (key.router, key.epoch, key.inputs_commitment, key.program_hash,
                     key.min_security_bits, inputs_json, self._now()),
                )
                proof_id = int(cursor.lastrowid or 0)
        except sqlite3.IntegrityError:
            return None
        return self.get(proof_id)

    def traced(self, proof: AheadProof, traced: Traced) -> AheadProof:
        self._update(
            proof, "proving",
            output_json=traced.output_json, trace_dir=traced.trace_dir, n_steps=traced.n_steps,
            trace_wall_s=traced.wall_s, trace_cpu_s=traced.cpu_s,
        )
        return self.get(proof.id)

    def ready(self, proof: AheadProof, proved: Proved) -> AheadProof:
        self._update(
            proof, "proving", state="ready", proof_path=proved.proof_path,
            fact_hash=proved.fact_hash, security_bits=proved.security_bits,
            proof_bytes=proved.proof_bytes, proof_wall_s=proved.wall_s,
            proof_cpu_s=proved.cpu_s, finished_at=self._now(),
        )
        return self.get(proof.id)

    def use(self, proof: AheadProof, job_id: str) -> AheadProof:
        """``proof`` is the job's: its trace and proof costs go to the job. Idempotent for
        the same job (a crash between this and the job's move repeats it)."""
        current = self.get(proof.id)
        if current.state == "used" and current.used_by == job_id:
            return current
        if current.state != "ready":
            raise AheadStoreError(
                f"proof {proof.id} made ahead is {current.state}, not ready: it cannot be used"
            )
        with self._store.transaction() as db:
            self._update(current, "ready", db=db, state="used", used_by=job_id)
            for entry in _cost_entries(current, job_id=job_id, outcome="ok", reason=None):
                self._ledger.record(db, entry)
        return self.get(proof.id)

    def used_by(self, job_id: str) -> AheadProof | None:
        rows = self._store.query(
            "SELECT * FROM ahead_proofs WHERE used_by = ? AND state = 'used' ORDER BY id DESC",
            (job_id,),
        )
        return AheadProof.from_row(rows[0]) if rows else None

    def discard(self, proof: AheadProof, reason: str) -> AheadProof | None:
        """Discard a proving or ready proof, its CPU to the ledger; None when it was used
        or discarded meanwhile (nothing to do)."""
        current = self.get(proof.id)
        if current.state not in ("proving", "ready"):
            return None
        columns: dict[str, Any] = {
            "state": "discarded", "reason": reason, "finished_at": self._now()
        }
        resolved = dataclasses.replace(current, **columns)
        with self._store.transaction() as db:
            self._update(current, current.state, db=db, **columns)
            for entry in _cost_entries(resolved, job_id=None, outcome="discarded", reason=reason):
                self._ledger.record(db, entry)
        return resolved

    def interrupted(self) -> list[AheadProof]:
        """At start-up: every row left ``proving`` by a keeper that stopped is discarded."""
        rows = self._store.query("SELECT * FROM ahead_proofs WHERE state = 'proving'")
        done = []
        for row in rows:
            proof = self.discard(
                AheadProof.from_row(row),
                "interrupted: the keeper stopped while it was being made (its prover died "
                "with it; the CPU it used was not measured)",
            )
            if proof is not None:
                done.append(proof)
        return done

    def counts(self) -> dict[str, int]:
        rows = self._store.query("SELECT state, COUNT(*) AS n FROM ahead_proofs GROUP BY state")
        return {str(r["state"]): int(r["n"]) for r in rows}

    # ------------------------------------------------------------------ internals
    def _update(
        self,
        proof: AheadProof,
        expected: AheadState,
        *,
        db: sqlite_utils.Database | None = None,
        **columns: Any,
    ) -> None:
        assignments = ", ".join(f"{c} = ?" for c in columns)
        sql = f"UPDATE ahead_proofs SET {assignments} WHERE id = ? AND state = ?"
        params = (*columns.values(), proof.id, expected)
        if db is None:
            with self._store.transaction() as tx:
                cursor = tx.execute(sql, params)
        else:
            cursor = db.execute(sql, params)
        if cursor.rowcount != 1:
            raise AheadStoreError(f"proof {proof.id} made ahead is no longer {expected}")


def _cost_entries(
    proof: AheadProof, *, job_id: str | None, outcome: Literal["ok", "discarded"],
    reason: str | None,
) -> list[CostEntry]:
    """The ledger rows of a resolved proof: its trace (when it ran) and its proof (when
    Stone ran, or was interrupted: then its CPU is unknown)."""
    entries = []
    if proof.trace_cpu_s is not None:
        entries.append(
            CostEntry(
                job_id=job_id, kind="trace", prover=None, outcome=outcome,
                reason=None if reason is None else f"made ahead: {reason}",
                wall_s=proof.trace_wall_s, cpu_s=proof.trace_cpu_s, n_steps=proof.n_steps,
            )
        )
        entries.append(
            CostEntry(
                job_id=job_id, kind="proof", prover="stone", outcome=outcome,
                reason="made ahead" if reason is None else f"made ahead: {reason}",
                wall_s=proof.proof_wall_s, cpu_s=proof.proof_cpu_s,
                proof_bytes=proof.proof_bytes, n_steps=proof.n_steps,
            )
        )
    return entries
