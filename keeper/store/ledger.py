"""The cost ledger: one ``costs`` row per attempt of anything that costs CPU, credit or fees,
and the report ``obsqra-keeper costs`` prints.

Amounts are what was measured or charged, never assumed. Fees stay exact integers in
their smallest unit (FRI or WEI; they exceed 64 bits, so the store keeps them as TEXT and
the report never turns them into floats). USD amounts are Decimals of the configured
prices. Days are UTC days of the row's ``at``.

Attribution: a row counts under its own ``prover``; rows without one (trace runs, fact
registration, execution) count under the prover of their job, else ``unattributed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import sqlite_utils

from keeper.store.db import Store

CostKind = Literal["trace", "proof", "fact_registration", "execution"]
CostOutcome = Literal["ok", "failed"]
JobSize = Literal["XS", "S", "M", "L"]

COST_KINDS: tuple[CostKind, ...] = ("trace", "proof", "fact_registration", "execution")
COST_OUTCOMES: tuple[CostOutcome, ...] = ("ok", "failed")
PROVERS = ("stone", "atlantic", "dev")
FEE_UNITS = ("FRI", "WEI")
JOB_SIZES: tuple[JobSize, ...] = ("XS", "S", "M", "L")
UNATTRIBUTED = "unattributed"
UNKNOWN_STEPS = "n_steps unknown"
_USD_QUANTUM = Decimal("0.000001")  # per-allocation USD: a millionth of a dollar is plenty

# Atlantic's declaredJobSize by trace size. Source: Herodotus' "Sending Query" page
# (docs.herodotus.cloud/atlantic-api/sending-query): 0-13 M steps -> S, 13-30 M -> M,
# > 30 M -> L; Madara's orchestrator maps n_steps the same way (< 13 M S, < 30 M M).
# The API also lists XS, but the docs give it no step range, so it is never chosen here;
# a row (upper bound, "XS") in front makes it so once Herodotus documents one.
# Upper bounds are exclusive; anything above the last one is L.
ATLANTIC_JOB_SIZE_BOUNDS: tuple[tuple[int, JobSize], ...] = (
    (13_000_000, "S"),
    (30_000_000, "M"),
)

Clock = Callable[[], datetime]


def atlantic_job_size(n_steps: int) -> JobSize:
    """The Atlantic job size a trace of ``n_steps`` steps falls into."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    for bound, size in ATLANTIC_JOB_SIZE_BOUNDS:
        if n_steps < bound:
            return size
    return "L"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CostEntry:
    """One ``costs`` row (``at`` is set by the ledger)."""

    job_id: str | None
    kind: CostKind
    prover: str | None
    outcome: CostOutcome
    reason: str | None = None  # failure code, or why it was skipped
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    proof_bytes: int | None = None
    n_steps: int | None = None
    atlantic_job_size: str | None = None
    atlantic_price: float | None = None  # configured USD price of that job size
    fee_amount: int | None = None  # actual fee from the receipt, smallest unit
    fee_unit: str | None = None  # FRI | WEI
    tx_hash: int | None = None

    def __post_init__(self) -> None:
        _one_of("kind", self.kind, COST_KINDS)
        _one_of("outcome", self.outcome, COST_OUTCOMES)
        if self.prover is not None:
            _one_of("prover", self.prover, PROVERS)
        if self.atlantic_job_size is not None:
            _one_of("atlantic_job_size", self.atlantic_job_size, JOB_SIZES)
        for name in ("wall_s", "cpu_s", "peak_rss_mb", "atlantic_price"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0
            ):
                raise ValueError(f"cost {name} must be a non-negative number, got {value!r}")
        for name in ("proof_bytes", "n_steps", "fee_amount", "tx_hash"):
            _non_negative_int(name, getattr(self, name))
        if (self.fee_amount is None) != (self.fee_unit is None):
            raise ValueError("cost fee_amount and fee_unit go together (both or neither)")
        if self.fee_unit is not None:
            _one_of("fee_unit", self.fee_unit, FEE_UNITS)


def _one_of(name: str, value: object, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"cost {name} must be one of {', '.join(allowed)}, got {value!r}")


def _non_negative_int(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"cost {name} must be a non-negative integer, got {value!r}")


# --- the report (pure over rows) --------------------------------------------------------


@dataclass
class Totals:
    rows: int = 0
    failed: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    atlantic_usd: Decimal = Decimal(0)  # recorded prices of Atlantic proof attempts
    atlantic_unpriced: int = 0  # Atlantic proof attempts recorded without a price
    fees: dict[str, int] = field(default_factory=dict)  # unit -> smallest-unit total
    as_if_atlantic_usd: Decimal = Decimal(0)  # every successful proof priced as Atlantic
    as_if_unpriced: dict[str, int] = field(default_factory=dict)  # job size -> proofs
    executed: int = 0  # confirmed allocations (per prover: the prover of the job)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "failed": self.failed,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "atlantic_usd": str(self.atlantic_usd),
            "atlantic_unpriced": self.atlantic_unpriced,
            "fees": {unit: str(amount) for unit, amount in sorted(self.fees.items())},
            "as_if_atlantic_usd": str(self.as_if_atlantic_usd),
            "as_if_atlantic_unpriced": dict(sorted(self.as_if_unpriced.items())),
            "executed_allocations": self.executed,
        }


@dataclass(frozen=True)
class PerAllocation:
    """Period totals divided by the executed allocations (fees: floor, exact ints)."""

    wall_s: float
    cpu_s: float
    atlantic_usd: Decimal
    fees: dict[str, int]
    as_if_atlantic_usd: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "atlantic_usd": str(self.atlantic_usd),
            "fees": {unit: str(amount) for unit, amount in sorted(self.fees.items())},
            "as_if_atlantic_usd": str(self.as_if_atlantic_usd),
        }


@dataclass(frozen=True)
class CostReport:
    since: date | None
    by_prover: dict[str, Totals]
    by_day: dict[date, Totals]
    total: Totals
    executed_allocations: int
    per_executed_allocation: PerAllocation | None  # None when nothing executed
    unconfigured_sizes: tuple[str, ...]  # job sizes met without a configured price

    def as_json(self) -> dict[str, Any]:
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "by_prover": {name: t.as_json() for name, t in sorted(self.by_prover.items())},
            "by_day": {day.isoformat(): t.as_json() for day, t in sorted(self.by_day.items())},
            "total": self.total.as_json(),
            "executed_allocations": self.executed_allocations,
            "per_executed_allocation": (
                None
                if self.per_executed_allocation is None
                else self.per_executed_allocation.as_json()
            ),
            "price_not_configured": list(self.unconfigured_sizes),
        }


def build_report(
    rows: Iterable[Mapping[str, Any]],
    confirmed: Iterable[tuple[date, str | None]],
    *,
    since: date | None,
    atlantic_price_per_job_size: Mapping[str, Decimal | float],
    job_size_for_n_steps: Callable[[int], str] = atlantic_job_size,
) -> CostReport:
    """Aggregate ``costs`` rows (with ``job_prover`` from their job) and the confirmed
    allocations as (UTC day, prover of the job). Pure."""
    prices = {size: Decimal(str(price)) for size, price in atlantic_price_per_job_size.items()}
    by_prover: dict[str, Totals] = {}
    by_day: dict[date, Totals] = {}
    total = Totals()
    unconfigured: set[str] = set()
    for row in rows:
        day = _utc_day(str(row["at"]))
        prover = row["prover"] or row.get("job_prover") or UNATTRIBUTED
        as_if = _as_if_atlantic(row, prices, job_size_for_n_steps)
        if isinstance(as_if, str) and as_if != UNKNOWN_STEPS:
            unconfigured.add(as_if)
        for totals in (
            by_prover.setdefault(prover, Totals()),
            by_day.setdefault(day, Totals()),
            total,
        ):
            _add(totals, row, as_if)
    executed = 0
    for day, job_prover in confirmed:
        by_day.setdefault(day, Totals()).executed += 1
        by_prover.setdefault(job_prover or UNATTRIBUTED, Totals()).executed += 1
        executed += 1
    total.executed = executed
    per_allocation = None
    if executed:
        per_allocation = PerAllocation(
            wall_s=total.wall_s / executed,
            cpu_s=total.cpu_s / executed,
            atlantic_usd=(total.atlantic_usd / executed).quantize(_USD_QUANTUM),
            fees={unit: amount // executed for unit, amount in total.fees.items()},
            as_if_atlantic_usd=(total.as_if_atlantic_usd / executed).quantize(_USD_QUANTUM),
        )
    return CostReport(
        since=since,
        by_prover=by_prover,
        by_day=by_day,
        total=total,
        executed_allocations=executed,
        per_executed_allocation=per_allocation,
        unconfigured_sizes=tuple(sorted(unconfigured)),
    )


def _as_if_atlantic(
    row: Mapping[str, Any],
    prices: Mapping[str, Decimal],
    job_size_for_n_steps: Callable[[int], str],
) -> Decimal | str | None:
    """The Atlantic price of a successful proof row; a job size (or UNKNOWN_STEPS) when it
    cannot be priced; None for rows that are not successful proofs."""
    if row["kind"] != "proof" or row["outcome"] != "ok":
        return None
    size = row["atlantic_job_size"] if row["prover"] == "atlantic" else None
    if size is None:
        if row["n_steps"] is None:
            return UNKNOWN_STEPS
        size = job_size_for_n_steps(int(row["n_steps"]))
    price = prices.get(size)
    return size if price is None else price


def _add(totals: Totals, row: Mapping[str, Any], as_if: Decimal | str | None) -> None:
    totals.rows += 1
    if row["outcome"] != "ok":
        totals.failed += 1
    totals.wall_s += row["wall_s"] or 0.0
    totals.cpu_s += row["cpu_s"] or 0.0
    if row["prover"] == "atlantic" and row["kind"] == "proof":
        if row["atlantic_price"] is not None:
            totals.atlantic_usd += Decimal(str(row["atlantic_price"]))
        elif row["outcome"] == "ok":
            totals.atlantic_unpriced += 1
    if row["fee_amount"] is not None:
        unit = row["fee_unit"] or "?"
        totals.fees[unit] = totals.fees.get(unit, 0) + int(row["fee_amount"])
    if isinstance(as_if, Decimal):
        totals.as_if_atlantic_usd += as_if
    elif as_if is not None:
        totals.as_if_unpriced[as_if] = totals.as_if_unpriced.get(as_if, 0) + 1


def _utc_day(text: str) -> date:
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:  # the store writes UTC; a naive stamp is taken as UTC
        return stamp.date()
    return stamp.astimezone(UTC).date()


# --- the ledger (store I/O) ---------------------------------------------------------------


class Ledger:
    def __init__(self, store: Store, *, clock: Clock = _utcnow) -> None:
        self._store = store
        self._clock = clock

    def record(self, db: sqlite_utils.Database | None, entry: CostEntry) -> int:
        """Append ``entry``; inside the caller's transaction when ``db`` is given (so the
        cost commits with the job transition it belongs to). Returns the row id."""
        if db is not None:
            return self._insert(db, entry)
        with self._store.transaction() as own:
            return self._insert(own, entry)

    def _insert(self, db: sqlite_utils.Database, entry: CostEntry) -> int:
        cursor = db.conn.execute(
            "INSERT INTO costs (job_id, kind, prover, outcome, reason, wall_s, cpu_s, "
            "peak_rss_mb, proof_bytes, n_steps, atlantic_job_size, atlantic_price, "
            "fee_amount, fee_unit, tx_hash, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.job_id,
                entry.kind,
                entry.prover,
                entry.outcome,
                entry.reason,
                entry.wall_s,
                entry.cpu_s,
                entry.peak_rss_mb,
                entry.proof_bytes,
                entry.n_steps,
                entry.atlantic_job_size,
                entry.atlantic_price,
                None if entry.fee_amount is None else str(entry.fee_amount),
                entry.fee_unit,
                None if entry.tx_hash is None else hex(entry.tx_hash),
                self._clock().astimezone(UTC).isoformat(timespec="seconds"),
            ),
        )
        return int(cursor.lastrowid or 0)

    def report(
        self,
        since: date | None,
        *,
        atlantic_price_per_job_size: Mapping[str, Decimal | float],
        job_size_for_n_steps: Callable[[int], str] = atlantic_job_size,
    ) -> CostReport:
        """Totals of the rows recorded on or after ``since`` (a UTC day; None: all)."""
        bound = "" if since is None else since.isoformat()
        rows = self._store.query(
            "SELECT c.*, j.prover AS job_prover FROM costs c "
            "LEFT JOIN jobs j ON j.id = c.job_id WHERE c.at >= ? ORDER BY c.id",
            (bound,),
        )
        # Confirmed when the job moved to 'confirmed' (its updated_at if no transition).
        confirmed = self._store.query(
            "SELECT COALESCE((SELECT MAX(t.at) FROM job_transitions t WHERE t.job_id = j.id "
            "AND t.to_state = 'confirmed'), j.updated_at) AS confirmed_at, j.prover "
            "FROM jobs j WHERE j.state = 'confirmed'"
        )
        dated = [(_utc_day(str(row["confirmed_at"])), row["prover"]) for row in confirmed]
        executed = [(day, prover) for day, prover in dated if since is None or day >= since]
        return build_report(
            rows,
            executed,
            since=since,
            atlantic_price_per_job_size=atlantic_price_per_job_size,
            job_size_for_n_steps=job_size_for_n_steps,
        )
