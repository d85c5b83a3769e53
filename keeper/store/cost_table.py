"""The cost report as text tables (``obsqra-keeper costs``, the demo's closing table)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from keeper.store.ledger import (
    UNKNOWN_STEPS,
    AllocationCost,
    AllocationSummary,
    CostReport,
    Totals,
)

# Executed allocations the human table lists by default (the most recent; --json: all).
DEFAULT_LISTED_ALLOCATIONS = 20

# Display names of the fee units' whole coins (1 STRK = 10^18 FRI, 1 ETH = 10^18 WEI).
_COINS = {"FRI": "STRK", "WEI": "ETH"}
_DECIMALS = 18


def format_fee(amount: int, unit: str) -> str:
    """Exact coin amount of a smallest-unit fee, e.g. 4500000000000000000 FRI -> 4.5 STRK."""
    coin = _COINS.get(unit)
    if coin is None:
        return f"{amount} {unit}"
    whole, frac = divmod(amount, 10**_DECIMALS)
    digits = f"{frac:0{_DECIMALS}d}".rstrip("0")
    return f"{whole}.{digits} {coin}" if digits else f"{whole} {coin}"


def _fees(fees: Mapping[str, int]) -> str:
    return ", ".join(format_fee(amount, unit) for unit, amount in sorted(fees.items())) or "0"


def _usd(value: Decimal) -> str:
    return f"{value:.2f}"


def _row(label: str, t: Totals) -> tuple[str, ...]:
    return (
        label,
        str(t.rows),
        str(t.failed),
        f"{t.wall_s:.1f}",
        f"{t.cpu_s:.1f}",
        _usd(t.atlantic_usd)
        + (f" (+{t.atlantic_unpriced} unpriced)" if t.atlantic_unpriced else ""),
        _fees(t.fees),
        _usd(t.as_if_atlantic_usd) + ("*" if t.as_if_unpriced else ""),
        str(t.executed),
    )


def _table(title: str, rows: list[tuple[str, ...]]) -> list[str]:
    header = (title, "rows", "failed", "wall s", "cpu s", "Atlantic USD", "L2 fees",
              "as-if Atlantic USD", "executed")
    return _columns(header, rows)


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, trailing spaces trimmed."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]


def _atlantic_price(allocation: AllocationCost) -> str:
    if allocation.atlantic_usd is not None:
        return f"{_usd(allocation.atlantic_usd)} ({allocation.atlantic_job_size})"
    if allocation.atlantic_unpriced == UNKNOWN_STEPS:
        return "- (n_steps unknown)"
    return f"- ({allocation.atlantic_unpriced}: no price)"


def _allocation_row(a: AllocationCost) -> tuple[str, ...]:
    return (
        str(a.epoch),
        a.prover,
        a.trigger,
        a.confirmed_at.strftime("%Y-%m-%d %H:%M"),
        "-" if a.n_steps is None else str(a.n_steps),
        f"{a.cpu_s:.1f}",
        _fees(a.verification_fees),
        str(a.verification_txs),
        _fees(a.execution_fees) + (f" ({a.execution_txs} txs)" if a.execution_txs > 1 else ""),
        _atlantic_price(a),
    )


def _allocations_table(allocations: Sequence[AllocationCost], listed: int | None) -> list[str]:
    shown = allocations if listed is None or listed <= 0 else allocations[-listed:]
    title = "executed allocations, oldest first"
    if len(shown) < len(allocations):
        title += f" (the last {len(shown)} of {len(allocations)}; --json lists all)"
    header = ("epoch", "prover", "trigger", "confirmed (UTC)", "n_steps", "cpu s",
              "verification fees", "txs", "execution fee", "Atlantic USD (size)")
    return [title, *_columns(header, [_allocation_row(a) for a in shown])]


def _summary_row(prover: str, s: AllocationSummary) -> tuple[str, ...]:
    median_usd = "-" if s.atlantic_usd_median is None else _usd(s.atlantic_usd_median)
    return (
        prover,
        str(s.allocations),
        f"{s.cpu_s:.1f} / {s.cpu_s_median:.1f}",
        f"{_fees(s.verification_fees)} / {_fees(s.verification_fees_median)}",
        str(s.verification_txs),
        f"{_fees(s.execution_fees)} / {_fees(s.execution_fees_median)}",
        f"{_usd(s.atlantic_usd)} / {median_usd}"
        + (f" ({s.atlantic_unpriced} unpriced)" if s.atlantic_unpriced else ""),
    )


def _summaries_table(summaries: Mapping[str, AllocationSummary]) -> list[str]:
    header = ("prover", "allocations", "cpu s total / median",
              "verification fees total / median", "txs", "execution fees total / median",
              "Atlantic USD total / median")
    rows = [_summary_row(name, summary) for name, summary in sorted(summaries.items())]
    return ["executed allocations per prover", *_columns(header, rows)]


def render(report: CostReport, *, listed: int | None = DEFAULT_LISTED_ALLOCATIONS) -> list[str]:
    """The report as lines; ``listed``: how many executed allocations to list, the most
    recent (None or 0: all)."""
    period = f"since {report.since.isoformat()}" if report.since else "all time"
    out = [f"costs, {period} (UTC days)"]
    if report.total.rows == 0 and report.executed_allocations == 0:
        out.append("no costs recorded")
        return out
    out.append("")
    prover_rows = [_row(name, t) for name, t in sorted(report.by_prover.items())]
    out += _table("prover", [*prover_rows, _row("total", report.total)])
    out.append("")
    day_rows = [_row(day.isoformat(), t) for day, t in sorted(report.by_day.items())]
    out += _table("day", [*day_rows, _row("total", report.total)])
    out.append("")
    out.append(f"executed allocations: {report.executed_allocations}")
    per = report.per_executed_allocation
    if per is not None:
        out.append(
            f"per executed allocation: {per.wall_s:.1f} wall s, {per.cpu_s:.1f} cpu s, "
            f"Atlantic USD {_usd(per.atlantic_usd)}, L2 fees {_fees(per.fees)}; "
            f"as if every proof had gone to Atlantic: USD {_usd(per.as_if_atlantic_usd)}"
        )
    if report.total.discarded:
        out.append(
            f"proofs made ahead and discarded (their inputs changed before the rebalance): "
            f"{report.total.discarded} rows, {report.total.discarded_cpu_s:.1f} cpu s "
            "(counted in the totals above)"
        )
    out += _unpriced_note(report)
    if report.allocations:
        out.append("")
        out += _allocations_table(report.allocations, listed)
        out.append("")
        out += _summaries_table(report.allocations_by_prover)
        out.append(
            "(cpu s: trace + proof runs of the job; verification fees: all its "
            "fact_registration transactions; Atlantic USD: the configured price of its job size)"
        )
    return out


def _unpriced_note(report: CostReport) -> list[str]:
    if not report.total.as_if_unpriced:
        return []
    missing = ", ".join(
        f"{size} ({count} proof{'s' if count != 1 else ''})"
        for size, count in sorted(report.total.as_if_unpriced.items())
    )
    return [
        f"* as-if Atlantic total leaves out proofs it cannot price: {missing}; "
        + (
            "price not configured: set prover.atlantic_price_per_job_size"
            if any(size != UNKNOWN_STEPS for size in report.total.as_if_unpriced)
            else "their trace size was not recorded"
        )
    ]
