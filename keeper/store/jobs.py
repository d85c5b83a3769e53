"""Rebalance jobs: one per (router, epoch), with explicit persisted states.

    detected → traced → proving → proved → fact_registered → submitted → confirmed
        any open state → failed (reason) | superseded (the epoch moved on-chain)
        failed → detected (reopened: the next run of the same job, same epoch)

A failed job is not the end of its epoch: while the epoch is still the router's current
one, the daemon reopens it once ``retry_after`` has passed (``run`` counts the runs, the
transitions keep the lineage). A failed job without ``retry_after`` is *parked*: a money
rule stopped it (too many paid failures) and only the operator reopens it
(``obsqra-keeper jobs retry EPOCH``).

This module is the only place that moves a job from one state to the next, and every
move is one store transaction that also appends a ``job_transitions`` row. A move names
the state it expects to leave: if another task (or a second keeper process sharing the
store) moved the job meanwhile, the move fails with ``StaleJobState`` instead of
overwriting. The job id ``<router>:<epoch>`` is the idempotency key of everything that is
retried for it (the Atlantic dedupId among them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlite_utils

from keeper.core.errors import KeeperError
from keeper.store.db import Store


class JobState(StrEnum):
    DETECTED = "detected"
    TRACED = "traced"
    PROVING = "proving"
    PROVED = "proved"
    FACT_REGISTERED = "fact_registered"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    SUPERSEDED = "superseded"


# No job leaves these. FAILED is closed too, but may be reopened (``reopen``).
TERMINAL: frozenset[JobState] = frozenset({JobState.CONFIRMED, JobState.SUPERSEDED})
CLOSED: frozenset[JobState] = TERMINAL | {JobState.FAILED}
# States in which nothing of the job has reached the chain: a reorg that removes the
# triggering event may cancel these (a submitted transaction is left to its receipt).
OFF_CHAIN: frozenset[JobState] = frozenset(
    {JobState.DETECTED, JobState.TRACED, JobState.PROVING, JobState.PROVED}
)
_FORWARD: dict[JobState, JobState] = {
    JobState.DETECTED: JobState.TRACED,
    JobState.TRACED: JobState.PROVING,
    JobState.PROVING: JobState.PROVED,
    JobState.PROVED: JobState.FACT_REGISTERED,
    JobState.FACT_REGISTERED: JobState.SUBMITTED,
    JobState.SUBMITTED: JobState.CONFIRMED,
}
# The one move back: a submission whose transaction never landed is prepared again.
# (A proof attempt that died with the process needs none: ``proving`` is re-entered.)
_BACK: dict[JobState, frozenset[JobState]] = {
    JobState.SUBMITTED: frozenset({JobState.FACT_REGISTERED}),
}


def allowed(src: JobState, dst: JobState) -> bool:
    if src == JobState.FAILED:
        return dst == JobState.DETECTED  # reopened: the next run of the same job
    if src in TERMINAL:
        return False
    if dst in (JobState.FAILED, JobState.SUPERSEDED):
        return True
    if src == JobState.FACT_REGISTERED and dst == JobState.CONFIRMED:
        return True  # the chain shows our fact executed (e.g. tx hash lost in a crash)
    if src == JobState.SUBMITTED and dst == JobState.CONFIRMED:
        return True
    return _FORWARD.get(src) == dst or dst in _BACK.get(src, frozenset())


def _is_progress(src: JobState, dst: JobState) -> bool:
    """A move forward (not a failure, not the move back, not a supersession)."""
    return _FORWARD.get(src) == dst or (
        dst == JobState.CONFIRMED and src == JobState.FACT_REGISTERED
    )


class JobError(KeeperError):
    code = "job"


class StaleJobState(JobError):
    code = "stale_job_state"


class IllegalTransition(JobError):
    code = "illegal_transition"


def job_id(router: int, epoch: int) -> str:
    return f"{router:#x}:{epoch}"


@dataclass(frozen=True)
class Job:
    id: str
    router: str
    epoch: int
    state: JobState
    trigger: str
    trigger_event_id: int | None
    trigger_block: int | None
    prover: str | None
    inputs_json: str | None
    output_json: str | None
    trace_dir: str | None
    n_steps: int | None
    proof_path: str | None
    fact_hash: str | None
    program_hash: str | None
    security_bits: int | None
    atlantic_query_id: str | None
    fact_tx_hash: str | None
    submit_tx_hash: str | None
    attempts: int
    failure_code: str | None
    failure_reason: str | None
    created_at: str
    updated_at: str
    run: int
    failing_since: str | None
    retry_after: str | None
    paid_failures: int
    verification_hash: str | None
    atlantic_dedup_id: str | None
    integrity_job_id: str | None

    @property
    def output(self) -> list[int]:
        if self.output_json is None:
            raise JobError(f"job {self.id} has no program output yet (state {self.state})")
        return [int(v) for v in json.loads(self.output_json)]

    @property
    def inputs(self) -> dict[str, Any]:
        if self.inputs_json is None:
            raise JobError(f"job {self.id} has no inputs yet (state {self.state})")
        data: dict[str, Any] = json.loads(self.inputs_json)
        return data

    @property
    def is_open(self) -> bool:
        return self.state not in CLOSED

    @property
    def parked(self) -> bool:
        """Failed and waiting for the operator (a money rule stopped automatic runs)."""
        return self.state == JobState.FAILED and self.retry_after is None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["state"] = JobState(values["state"])
        return cls(**values)


# Columns a transition may set besides state (everything else is fixed at creation).
_MUTABLE = frozenset(
    {
        "prover",
        "inputs_json",
        "output_json",
        "trace_dir",
        "n_steps",
        "proof_path",
        "fact_hash",
        "program_hash",
        "security_bits",
        "atlantic_query_id",
        "fact_tx_hash",
        "submit_tx_hash",
        "failure_code",
        "failure_reason",
        "verification_hash",
        "atlantic_dedup_id",
        "integrity_job_id",
    }
)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """Persistence and transitions of jobs. Every method is one transaction (or joins the
    caller's, so a job can be created together with marking its event processed)."""

    def __init__(self, store: Store, clock: Clock = _utcnow) -> None:
        self._store = store
        self._clock = clock

    def _now(self) -> str:
        return self._clock().isoformat(timespec="milliseconds")

    # -- reads ----------------------------------------------------------------------------
    def get(self, jid: str) -> Job | None:
        rows = self._store.query("SELECT * FROM jobs WHERE id = ?", (jid,))
        return Job.from_row(rows[0]) if rows else None

    def require(self, jid: str) -> Job:
        job = self.get(jid)
        if job is None:
            raise JobError(f"no job {jid} in the store")
        return job

    def open_jobs(self) -> list[Job]:
        closed = tuple(s.value for s in CLOSED)
        rows = self._store.query(
            f"SELECT * FROM jobs WHERE state NOT IN ({','.join('?' * len(closed))}) "
            "ORDER BY epoch, created_at",
            closed,
        )
        return [Job.from_row(r) for r in rows]

    def recent(self, limit: int = 50) -> list[Job]:
        rows = self._store.query("SELECT * FROM jobs ORDER BY epoch DESC LIMIT ?", (limit,))
        return [Job.from_row(r) for r in rows]

    def open_epochs(self, router: int) -> frozenset[int]:
        return frozenset(j.epoch for j in self.open_jobs() if int(j.router, 16) == router)

    def for_epoch(self, router: int, epoch: int) -> Job | None:
        return self.get(job_id(router, epoch))

    def counts_by_state(self) -> dict[str, int]:
        rows = self._store.query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {str(r["state"]): int(r["n"]) for r in rows}

    def transitions(self, jid: str) -> list[tuple[str | None, str]]:
        rows = self._store.query(
            "SELECT from_state, to_state FROM job_transitions WHERE job_id = ? ORDER BY id",
            (jid,),
        )
        return [(r["from_state"], r["to_state"]) for r in rows]

    # -- writes ---------------------------------------------------------------------------
    def create(
        self,
        router: int,
        epoch: int,
        trigger: str,
        *,
        trigger_event_id: int | None = None,
        trigger_block: int | None = None,
    ) -> Job | None:
        """Create the job for (router, epoch); ``None`` when one exists (open or not).

        One job per epoch ever: a failed epoch is not retried by a new job behind the
        operator's back; it stays failed with its reason until the epoch moves on or the
        operator retries it (``retry``).
        """
        jid = job_id(router, epoch)
        now = self._now()
        with self._store.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO jobs (id, router, epoch, state, trigger, trigger_event_id,"
                " trigger_block, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    jid,
                    f"{router:#x}",
                    epoch,
                    JobState.DETECTED.value,
                    trigger,
                    trigger_event_id,
                    trigger_block,
                    now,
                    now,
                ),
            )
            if cursor.rowcount == 0:
                return None
            self._log_transition(db, jid, None, JobState.DETECTED, f"trigger={trigger}", now)
        return self.require(jid)

    def advance(self, job: Job, to: JobState, *, detail: str = "", **columns: Any) -> Job:
        """Move ``job`` from the state it was read in to ``to`` and set ``columns``."""
        if not allowed(job.state, to):
            raise IllegalTransition(f"job {job.id}: {job.state} → {to} is not a legal move")
        if job.state == JobState.FAILED:
            return self.reopen(job, detail or "reopened")
        unknown = set(columns) - _MUTABLE
        if unknown:
            raise JobError(f"job {job.id}: cannot set {sorted(unknown)}")
        if _is_progress(job.state, to):
            # An earlier attempt's failure is history (job_transitions keeps it), not the
            # state of a job that moved on: `jobs` must not show it for a healthy job.
            columns = {"failure_code": None, "failure_reason": None, **columns}
        now = self._now()
        assignments = ", ".join(f"{c} = ?" for c in columns)
        sets = (
            "state = ?, attempts = 0, failing_since = NULL, updated_at = ?"
            f"{', ' if columns else ''}{assignments}"
        )
        with self._store.transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND state = ?",
                (to.value, now, *columns.values(), job.id, job.state.value),
            )
            if cursor.rowcount != 1:
                raise StaleJobState(
                    f"job {job.id} is no longer in state {job.state} (moved by another task "
                    "or process); re-read it"
                )
            self._log_transition(db, job.id, job.state, to, detail, now)
        return self.require(job.id)

    def fail(
        self,
        job: Job,
        code: str,
        reason: str,
        *,
        retry_after: datetime | None,
        paid: bool = False,
    ) -> Job:
        """Close the run as failed. ``retry_after``: when the daemon may reopen it (None:
        parked until the operator retries it). ``paid``: the failure cost money (a
        reverted transaction, a failed paid query); the money rules count these."""
        job = self.advance(
            job,
            JobState.FAILED,
            detail=f"{code}: {reason}",
            failure_code=code,
            failure_reason=reason,
        )
        with self._store.transaction() as db:
            db.execute(
                "UPDATE jobs SET retry_after = ?, paid_failures = paid_failures + ? "
                "WHERE id = ? AND state = ?",
                (_iso(retry_after), int(paid), job.id, JobState.FAILED.value),
            )
        return self.require(job.id)

    def reopen(self, job: Job, detail: str) -> Job:
        """The next run of a failed job: back to ``detected`` (the model runs again on the
        then-current inputs). What identifies paid work (the Atlantic query, the fact, its
        registration) is kept, so a new run resumes it instead of paying again."""
        if job.state != JobState.FAILED:
            raise IllegalTransition(f"job {job.id}: only a failed job is reopened ({job.state})")
        now = self._now()
        with self._store.transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET state = ?, run = run + 1, attempts = 0, failing_since = NULL,"
                " retry_after = NULL, failure_code = NULL, failure_reason = NULL,"
                " updated_at = ? WHERE id = ? AND state = ?",
                (JobState.DETECTED.value, now, job.id, JobState.FAILED.value),
            )
            if cursor.rowcount != 1:
                raise StaleJobState(f"job {job.id} is no longer failed; re-read it")
            self._log_transition(
                db, job.id, JobState.FAILED, JobState.DETECTED, f"run {job.run + 1}: {detail}", now
            )
        return self.require(job.id)

    def allow_retry(self, job: Job, *, at: datetime) -> Job:
        """The operator's ``jobs retry``: the failed (or parked) job may be reopened from
        ``at`` on, and its paid failures are forgiven (the operator accepts the cost)."""
        if job.state != JobState.FAILED:
            raise JobError(
                f"job {job.id} is {job.state}, not failed: nothing to retry"
            )
        with self._store.transaction() as db:
            db.execute(
                "UPDATE jobs SET retry_after = ?, paid_failures = 0, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (_iso(at), self._now(), job.id, JobState.FAILED.value),
            )
            self._log_transition(
                db, job.id, JobState.FAILED, JobState.FAILED, "operator: retry requested",
                self._now(),
            )
        return self.require(job.id)

    def supersede(self, job: Job, reason: str) -> Job:
        return self.advance(
            job,
            JobState.SUPERSEDED,
            detail=reason,
            failure_code="superseded",
            failure_reason=reason,
        )

    def record_attempt_failure(self, job: Job, code: str, reason: str) -> int:
        """Count a failed attempt in the job's current state (``failing_since`` keeps
        when the first one happened); returns the new count."""
        now = self._now()
        with self._store.transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET attempts = attempts + 1, failure_code = ?, failure_reason = ?,"
                " failing_since = COALESCE(failing_since, ?), updated_at = ?"
                " WHERE id = ? AND state = ?",
                (code, reason, now, now, job.id, job.state.value),
            )
            if cursor.rowcount != 1:
                raise StaleJobState(f"job {job.id} is no longer in state {job.state}")
        return self.require(job.id).attempts

    def set_columns(self, job: Job, **columns: Any) -> Job:
        """Record progress inside a state (e.g. the Atlantic query id) without moving it."""
        unknown = set(columns) - _MUTABLE
        if unknown:
            raise JobError(f"job {job.id}: cannot set {sorted(unknown)}")
        assignments = ", ".join(f"{c} = ?" for c in columns)
        with self._store.transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ? AND state = ?",
                (*columns.values(), self._now(), job.id, job.state.value),
            )
            if cursor.rowcount != 1:
                raise StaleJobState(f"job {job.id} is no longer in state {job.state}")
        return self.require(job.id)

    def rollback_after_block(self, db: sqlite_utils.Database, block_number: int) -> int:
        """Within the stream's rollback transaction: supersede the jobs whose triggering
        event was in a block after ``block_number`` and that have not reached the chain."""
        off_chain = tuple(s.value for s in OFF_CHAIN)
        rows = list(
            db.query(
                f"SELECT id, state FROM jobs WHERE trigger_block > ? AND state IN "
                f"({','.join('?' * len(off_chain))})",
                (block_number, *off_chain),
            )
        )
        now = self._now()
        reason = f"the triggering event was rolled back (reorg after block {block_number})"
        for row in rows:
            db.execute(
                "UPDATE jobs SET state = ?, failure_code = 'rolled_back', failure_reason = ?,"
                " updated_at = ? WHERE id = ?",
                (JobState.SUPERSEDED.value, reason, now, row["id"]),
            )
            self._log_transition(
                db, row["id"], JobState(row["state"]), JobState.SUPERSEDED, reason, now
            )
        return len(rows)

    @staticmethod
    def _log_transition(
        db: sqlite_utils.Database,
        jid: str,
        src: JobState | None,
        dst: JobState,
        detail: str,
        now: str,
    ) -> None:
        db.execute(
            "INSERT INTO job_transitions (job_id, from_state, to_state, detail, at)"
            " VALUES (?, ?, ?, ?, ?)",
            (jid, None if src is None else src.value, dst.value, detail, now),
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")
