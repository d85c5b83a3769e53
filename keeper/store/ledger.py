"""The cost ledger: one ``costs`` row per attempt of anything that costs CPU, credit or fees,
and the report ``obsqra-keeper costs`` prints.

Amounts are what was measured or charged, never assumed. Fees stay exact integers in
their smallest unit (FRI or WEI; they exceed 64 bits, so the store keeps them as TEXT and
the report never turns them into floats). USD amounts are Decimals of the configured
prices. Days are UTC days of the row's ``at``.

Attribution: a row counts under its own ``prover``; rows without one (trace runs, fact
registration, execution) count under the prover of their job, else ``unattributed``.

Executed allocations (confirmed jobs) are also costed one by one (``AllocationCost``): all
rows of the job, whenever recorded, under the job's prover; ``executed_allocations`` gives
the recent ones to the ``cheapest`` policy (keeper.engine.cheapest).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import sqlite_utils

from keeper.store.db import Store
from prover.settings import JOB_SIZES, atlantic_job_size

CostKind = Literal["trace", "proof", "fact_registration", "execution"]
# discarded: a proof made ahead that no job used (its inputs changed): its CPU still counts.
CostOutcome = Literal["ok", "failed", "discarded"]

COST_KINDS: tuple[CostKind, ...] = ("trace", "proof", "fact_registration", "execution")
COST_OUTCOMES: tuple[CostOutcome, ...] = ("ok", "failed", "discarded")
PROVERS = ("stone", "atlantic", "dev")
FEE_UNITS = ("FRI", "WEI")
UNATTRIBUTED = "unattributed"
UNKNOWN_STEPS = "n_steps unknown"
_USD_QUANTUM = Decimal("0.000001")  # per-allocation USD: a millionth of a dollar is plenty

Clock = Callable[[], datetime]


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
    discarded: int = 0  # rows of proofs made ahead that no job used
    discarded_cpu_s: float = 0.0
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
            "discarded": self.discarded,
            "discarded_cpu_s": round(self.discarded_cpu_s, 3),
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


# --- executed allocations, one by one (pure) -----------------------------------------------


def median_fee(amounts: Sequence[int]) -> int:
    """The median of exact fee amounts, still exact: the middle amount, or with an even
    count the midpoint of the two middle ones rounded down to a whole smallest unit."""
    if not amounts:
        raise ValueError("no fees to take the median of")
    ordered = sorted(amounts)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) // 2


def median_fees(fees: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """Per unit, the median over all of ``fees`` (a unit one of them lacks is 0 there)."""
    units = sorted({unit for amounts in fees for unit in amounts})
    return {unit: median_fee([amounts.get(unit, 0) for amounts in fees]) for unit in units}


@dataclass(frozen=True)
class ConfirmedJob:
    """A job whose allocation the router executed, as the ``jobs`` table has it."""

    job_id: str
    epoch: int
    prover: str | None
    trigger: str
    n_steps: int | None
    confirmed_at: datetime  # UTC: its move to 'confirmed'


@dataclass(frozen=True)
class AllocationCost:
    """What one executed allocation cost: every ledger row of its job, whenever recorded.

    ``atlantic_usd`` is the Atlantic price of the same job at the configured prices: the
    price of the size an Atlantic proof of the job was declared with, else of the size its
    ``n_steps`` falls in (for a Stone job, what Atlantic would have cost). None when it
    cannot be priced; ``atlantic_unpriced`` then says why: the size without a configured
    price, or UNKNOWN_STEPS."""

    job_id: str
    epoch: int
    prover: str  # the job's prover, else UNATTRIBUTED
    trigger: str
    confirmed_at: datetime
    n_steps: int | None
    trace_cpu_s: float
    proof_cpu_s: float | None  # None: no proof row of the job recorded CPU seconds
    verification_fees: Mapping[str, int]  # unit -> sum over its fact_registration txs
    verification_txs: int  # fact_registration rows, reverted ones included (they cost)
    execution_fees: Mapping[str, int]  # unit -> sum over its execution txs
    execution_txs: int
    atlantic_job_size: str | None
    atlantic_usd: Decimal | None
    atlantic_unpriced: str | None

    @property
    def cpu_s(self) -> float:
        """Prover CPU seconds: the trace runs and the proof attempts of the job."""
        return self.trace_cpu_s + (self.proof_cpu_s or 0.0)

    def as_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "epoch": self.epoch,
            "prover": self.prover,
            "trigger": self.trigger,
            "confirmed_at": self.confirmed_at.isoformat(),
            "n_steps": self.n_steps,
            "cpu_s": round(self.cpu_s, 3),
            "trace_cpu_s": round(self.trace_cpu_s, 3),
            "proof_cpu_s": None if self.proof_cpu_s is None else round(self.proof_cpu_s, 3),
            "verification_fees": _fees_json(self.verification_fees),
            "verification_txs": self.verification_txs,
            "execution_fees": _fees_json(self.execution_fees),
            "execution_txs": self.execution_txs,
            "atlantic_job_size": self.atlantic_job_size,
            "atlantic_usd": None if self.atlantic_usd is None else str(self.atlantic_usd),
            "atlantic_unpriced": self.atlantic_unpriced,
        }


@dataclass(frozen=True)
class AllocationSummary:
    """One prover's executed allocations: totals and medians (fees exact, per unit)."""

    allocations: int
    cpu_s: float
    cpu_s_median: float
    verification_fees: dict[str, int]
    verification_fees_median: dict[str, int]
    verification_txs: int
    execution_fees: dict[str, int]
    execution_fees_median: dict[str, int]
    execution_txs: int
    atlantic_usd: Decimal  # over the priced allocations
    atlantic_usd_median: Decimal | None  # None: none of them priced
    atlantic_unpriced: int

    def as_json(self) -> dict[str, Any]:
        return {
            "allocations": self.allocations,
            "cpu_s": round(self.cpu_s, 3),
            "cpu_s_median": round(self.cpu_s_median, 3),
            "verification_fees": _fees_json(self.verification_fees),
            "verification_fees_median": _fees_json(self.verification_fees_median),
            "verification_txs": self.verification_txs,
            "execution_fees": _fees_json(self.execution_fees),
            "execution_fees_median": _fees_json(self.execution_fees_median),
            "execution_txs": self.execution_txs,
            "atlantic_usd": str(self.atlantic_usd),
            "atlantic_usd_median": (
                None if self.atlantic_usd_median is None else str(self.atlantic_usd_median)
            ),
            "atlantic_unpriced": self.atlantic_unpriced,
        }


def _fees_json(fees: Mapping[str, int]) -> dict[str, str]:
    return {unit: str(amount) for unit, amount in sorted(fees.items())}


def _prices(atlantic_price_per_job_size: Mapping[str, Decimal | float]) -> dict[str, Decimal]:
    return {size: Decimal(str(price)) for size, price in atlantic_price_per_job_size.items()}


def allocation_costs(
    jobs: Iterable[ConfirmedJob],
    rows: Iterable[Mapping[str, Any]],
    *,
    atlantic_price_per_job_size: Mapping[str, Decimal | float],
    job_size_for_n_steps: Callable[[int], str] = atlantic_job_size,
) -> list[AllocationCost]:
    """Each confirmed job with what its ``costs`` rows (in id order) add up to, oldest
    confirmation first. Rows of other jobs are ignored. Pure."""
    prices = _prices(atlantic_price_per_job_size)
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row["job_id"] is not None:
            by_job.setdefault(str(row["job_id"]), []).append(row)
    costed = [
        _allocation(job, by_job.get(job.job_id, []), prices, job_size_for_n_steps)
        for job in jobs
    ]
    return sorted(costed, key=lambda a: (a.confirmed_at, a.job_id))


def _allocation(
    job: ConfirmedJob,
    rows: Sequence[Mapping[str, Any]],
    prices: Mapping[str, Decimal],
    job_size_for_n_steps: Callable[[int], str],
) -> AllocationCost:
    proof_cpu = [float(r["cpu_s"]) for r in rows if r["kind"] == "proof" and r["cpu_s"] is not None]
    verification, verification_txs = _fee_sums(rows, "fact_registration")
    execution, execution_txs = _fee_sums(rows, "execution")
    n_steps = job.n_steps
    if n_steps is None:  # the job's column is set when it traced; else the last row's
        recorded = [int(r["n_steps"]) for r in rows if r["n_steps"] is not None]
        n_steps = recorded[-1] if recorded else None
    declared = [
        str(r["atlantic_job_size"])
        for r in rows
        if r["kind"] == "proof" and r["prover"] == "atlantic" and r["outcome"] == "ok"
        and r["atlantic_job_size"] is not None
    ]
    size = declared[-1] if declared else None
    if size is None and n_steps is not None:
        size = job_size_for_n_steps(n_steps)
    price = None if size is None else prices.get(size)
    return AllocationCost(
        job_id=job.job_id,
        epoch=job.epoch,
        prover=job.prover or UNATTRIBUTED,
        trigger=job.trigger,
        confirmed_at=job.confirmed_at,
        n_steps=n_steps,
        trace_cpu_s=sum(float(r["cpu_s"] or 0.0) for r in rows if r["kind"] == "trace"),
        proof_cpu_s=sum(proof_cpu) if proof_cpu else None,
        verification_fees=verification,
        verification_txs=verification_txs,
        execution_fees=execution,
        execution_txs=execution_txs,
        atlantic_job_size=size,
        atlantic_usd=price,
        atlantic_unpriced=None if price is not None else (size or UNKNOWN_STEPS),
    )


def _fee_sums(rows: Iterable[Mapping[str, Any]], kind: str) -> tuple[dict[str, int], int]:
    """Exact per-unit fee totals of the rows of ``kind``, and how many rows there were."""
    sums: dict[str, int] = {}
    count = 0
    for row in rows:
        if row["kind"] != kind:
            continue
        count += 1
        if row["fee_amount"] is not None:
            unit = row["fee_unit"] or "?"
            sums[unit] = sums.get(unit, 0) + int(row["fee_amount"])
    return sums, count


def _sum_fees(fees: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for amounts in fees:
        for unit, amount in amounts.items():
            total[unit] = total.get(unit, 0) + amount
    return total


def summarize_allocations(
    allocations: Iterable[AllocationCost],
) -> dict[str, AllocationSummary]:
    """Totals and medians per prover of the job. Pure."""
    grouped: dict[str, list[AllocationCost]] = {}
    for allocation in allocations:
        grouped.setdefault(allocation.prover, []).append(allocation)
    return {prover: _summary(group) for prover, group in sorted(grouped.items())}


def _summary(group: Sequence[AllocationCost]) -> AllocationSummary:
    priced = [a.atlantic_usd for a in group if a.atlantic_usd is not None]
    verification = [a.verification_fees for a in group]
    execution = [a.execution_fees for a in group]
    return AllocationSummary(
        allocations=len(group),
        cpu_s=sum(a.cpu_s for a in group),
        cpu_s_median=statistics.median(a.cpu_s for a in group),
        verification_fees=_sum_fees(verification),
        verification_fees_median=median_fees(verification),
        verification_txs=sum(a.verification_txs for a in group),
        execution_fees=_sum_fees(execution),
        execution_fees_median=median_fees(execution),
        execution_txs=sum(a.execution_txs for a in group),
        atlantic_usd=sum(priced, Decimal(0)),
        atlantic_usd_median=statistics.median(priced) if priced else None,
        atlantic_unpriced=len(group) - len(priced),
    )


@dataclass(frozen=True)
class CostReport:
    since: date | None
    by_prover: dict[str, Totals]
    by_day: dict[date, Totals]
    total: Totals
    executed_allocations: int
    per_executed_allocation: PerAllocation | None  # None when nothing executed
    unconfigured_sizes: tuple[str, ...]  # job sizes met without a configured price
    allocations: tuple[AllocationCost, ...] = ()  # executed in the period, oldest first
    allocations_by_prover: dict[str, AllocationSummary] = field(default_factory=dict)

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
            "allocations": [a.as_json() for a in self.allocations],
            "allocations_by_prover": {
                name: summary.as_json()
                for name, summary in sorted(self.allocations_by_prover.items())
            },
        }


def build_report(
    rows: Iterable[Mapping[str, Any]],
    confirmed: Iterable[ConfirmedJob],
    *,
    job_rows: Iterable[Mapping[str, Any]] = (),
    since: date | None,
    atlantic_price_per_job_size: Mapping[str, Decimal | float],
    job_size_for_n_steps: Callable[[int], str] = atlantic_job_size,
) -> CostReport:
    """Aggregate the period's ``costs`` rows (with ``job_prover`` from their job) and the
    allocations executed in it (``confirmed``, costed one by one from ``job_rows``: every
    row of those jobs, whenever recorded). Pure."""
    prices = _prices(atlantic_price_per_job_size)
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
    executed_jobs = list(confirmed)
    for job in executed_jobs:
        by_day.setdefault(job.confirmed_at.astimezone(UTC).date(), Totals()).executed += 1
        by_prover.setdefault(job.prover or UNATTRIBUTED, Totals()).executed += 1
    total.executed = executed = len(executed_jobs)
    allocations = allocation_costs(
        executed_jobs,
        job_rows,
        atlantic_price_per_job_size=prices,
        job_size_for_n_steps=job_size_for_n_steps,
    )
    return CostReport(
        since=since,
        by_prover=by_prover,
        by_day=by_day,
        total=total,
        executed_allocations=executed,
        per_executed_allocation=_per_allocation(total, executed),
        unconfigured_sizes=tuple(sorted(unconfigured)),
        allocations=tuple(allocations),
        allocations_by_prover=summarize_allocations(allocations),
    )


def _per_allocation(total: Totals, executed: int) -> PerAllocation | None:
    if not executed:
        return None
    return PerAllocation(
        wall_s=total.wall_s / executed,
        cpu_s=total.cpu_s / executed,
        atlantic_usd=(total.atlantic_usd / executed).quantize(_USD_QUANTUM),
        fees={unit: amount // executed for unit, amount in total.fees.items()},
        as_if_atlantic_usd=(total.as_if_atlantic_usd / executed).quantize(_USD_QUANTUM),
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
    if row["outcome"] == "failed":
        totals.failed += 1
    elif row["outcome"] == "discarded":
        totals.discarded += 1
        totals.discarded_cpu_s += row["cpu_s"] or 0.0
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


def _utc_stamp(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:  # the store writes UTC; a naive stamp is taken as UTC
        return stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC)


def _utc_day(text: str) -> date:
    return _utc_stamp(text).date()


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

    def recent_proof_seconds(
        self, prover: str, n_steps: int | None, *, last: int = 5
    ) -> float | None:
        """Median wall time of the last ``last`` successful proofs by ``prover`` of traces
        of ``n_steps`` steps (any size when None); None before the first."""
        rows = self._store.query(
            "SELECT wall_s FROM costs WHERE kind = 'proof' AND outcome = 'ok' AND prover = ? "
            "AND wall_s IS NOT NULL AND (? IS NULL OR n_steps = ?) ORDER BY id DESC LIMIT ?",
            (prover, n_steps, n_steps, last),
        )
        if not rows:
            return None
        return float(statistics.median(float(r["wall_s"]) for r in rows))

    def has_transaction(self, tx_hash: int) -> bool:
        """Is the fee of transaction ``tx_hash`` recorded already?"""
        rows = self._store.query("SELECT 1 FROM costs WHERE tx_hash = ? LIMIT 1", (hex(tx_hash),))
        return bool(rows)

    def last_fee_row(self) -> int:
        """The id of the newest row with a fee (0 when none): it changes with each fee
        recorded, so a reader knows the account's balance moved."""
        rows = self._store.query("SELECT MAX(id) AS mark FROM costs WHERE fee_amount IS NOT NULL")
        mark = rows[0]["mark"] if rows else None
        return int(mark) if mark is not None else 0

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
        """Totals of the rows recorded on or after ``since`` (a UTC day; None: all), and
        the allocations executed on or after it, each with all of its job's costs."""
        bound = "" if since is None else since.isoformat()
        rows = self._store.query(
            "SELECT c.*, j.prover AS job_prover FROM costs c "
            "LEFT JOIN jobs j ON j.id = c.job_id WHERE c.at >= ? ORDER BY c.id",
            (bound,),
        )
        executed = [
            job
            for job in self._confirmed_jobs()
            if since is None or job.confirmed_at.date() >= since
        ]
        return build_report(
            rows,
            executed,
            job_rows=self._rows_of(executed),
            since=since,
            atlantic_price_per_job_size=atlantic_price_per_job_size,
            job_size_for_n_steps=job_size_for_n_steps,
        )

    def executed_allocations(
        self,
        *,
        confirmed_since: datetime | None,
        atlantic_price_per_job_size: Mapping[str, Decimal | float],
        job_size_for_n_steps: Callable[[int], str] = atlantic_job_size,
    ) -> list[AllocationCost]:
        """The allocations executed at or after ``confirmed_since`` (an aware datetime;
        None: all), oldest first, each with all of its job's costs."""
        if confirmed_since is not None and confirmed_since.tzinfo is None:
            raise ValueError("confirmed_since must carry its time zone (UTC)")
        jobs = [
            job
            for job in self._confirmed_jobs()
            if confirmed_since is None or job.confirmed_at >= confirmed_since
        ]
        return allocation_costs(
            jobs,
            self._rows_of(jobs),
            atlantic_price_per_job_size=atlantic_price_per_job_size,
            job_size_for_n_steps=job_size_for_n_steps,
        )

    def _confirmed_jobs(self) -> list[ConfirmedJob]:
        # Confirmed when the job moved to 'confirmed' (its updated_at if no transition).
        rows = self._store.query(
            "SELECT j.id, j.epoch, j.prover, j.trigger, j.n_steps, "
            "COALESCE((SELECT MAX(t.at) FROM job_transitions t WHERE t.job_id = j.id "
            "AND t.to_state = 'confirmed'), j.updated_at) AS confirmed_at "
            "FROM jobs j WHERE j.state = 'confirmed'"
        )
        return [
            ConfirmedJob(
                job_id=str(row["id"]),
                epoch=int(row["epoch"]),
                prover=row["prover"],
                trigger=str(row["trigger"]),
                n_steps=None if row["n_steps"] is None else int(row["n_steps"]),
                confirmed_at=_utc_stamp(str(row["confirmed_at"])),
            )
            for row in rows
        ]

    def _rows_of(self, jobs: Sequence[ConfirmedJob]) -> list[dict[str, Any]]:
        """Every ``costs`` row of ``jobs``, in id order."""
        if not jobs:
            return []
        return self._store.query(
            "SELECT * FROM costs WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY id",
            (json.dumps([job.job_id for job in jobs]),),
        )
