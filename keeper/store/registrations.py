"""The Integrity transactions that register a job's fact, one row per transaction.

A row is written before the transaction is signed (``signing``), gets its hash before
the broadcast (``sent``) and its outcome from the receipt (``succeeded`` / ``reverted``),
or ``dropped`` when it never landed. With this log and the verifier's on-chain state the
registrar resumes after a crash at any point without paying again for a step that landed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

from keeper.store.db import Store

RegistrationStatus = Literal["signing", "sent", "succeeded", "reverted", "dropped"]
IN_FLIGHT: tuple[RegistrationStatus, ...] = ("signing", "sent")


@dataclass(frozen=True)
class RegistrationTx:
    id: int
    job_id: str
    fact_hash: str
    integrity_job_id: str
    step: int
    function: str
    calldata_felts: int
    tx_hash: str | None
    status: RegistrationStatus
    reason: str | None
    at: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RegistrationTx:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


class RegistrationLog:
    def __init__(
        self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._store = store
        self._clock = clock

    def _now(self) -> str:
        return self._clock().isoformat(timespec="milliseconds")

    def for_job(self, job_id: str) -> list[RegistrationTx]:
        rows = self._store.query(
            "SELECT * FROM fact_registrations WHERE job_id = ? ORDER BY id", (job_id,)
        )
        return [RegistrationTx.from_row(r) for r in rows]

    def in_flight(self, job_id: str, integrity_job_id: int) -> RegistrationTx | None:
        """The transaction of this Integrity job whose outcome is not known yet."""
        rows = self._store.query(
            "SELECT * FROM fact_registrations WHERE job_id = ? AND integrity_job_id = ?"
            " AND status IN (?, ?) ORDER BY id DESC LIMIT 1",
            (job_id, hex(integrity_job_id), *IN_FLIGHT),
        )
        return RegistrationTx.from_row(rows[0]) if rows else None

    def begin(
        self,
        job_id: str,
        fact_hash: int,
        integrity_job_id: int,
        step: int,
        function: str,
        calldata_felts: int,
    ) -> int:
        with self._store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO fact_registrations (job_id, fact_hash, integrity_job_id, step,"
                " function, calldata_felts, status, at) VALUES (?, ?, ?, ?, ?, ?, 'signing', ?)",
                (job_id, hex(fact_hash), hex(integrity_job_id), step, function,
                 calldata_felts, self._now()),
            )
            return int(cursor.lastrowid or 0)

    def sent(self, row_id: int, tx_hash: int) -> None:
        self._set(row_id, "sent", tx_hash=hex(tx_hash))

    def finish(self, row_id: int, status: RegistrationStatus, reason: str | None = None) -> None:
        self._set(row_id, status, reason=reason)

    def _set(self, row_id: int, status: RegistrationStatus, **columns: str | None) -> None:
        assignments = "".join(f", {name} = ?" for name in columns)
        with self._store.transaction() as db:
            db.execute(
                f"UPDATE fact_registrations SET status = ?{assignments}, at = ? WHERE id = ?",
                (status, *columns.values(), self._now(), row_id),
            )
