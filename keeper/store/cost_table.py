"""The cost report as text tables (``obsqra-keeper costs``, the demo's closing table)."""

from __future__ import annotations

from decimal import Decimal

from keeper.store.ledger import UNKNOWN_STEPS, CostReport, Totals

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


def _fees(fees: dict[str, int]) -> str:
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
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]


def render(report: CostReport) -> list[str]:
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
    if report.total.as_if_unpriced:
        missing = ", ".join(
            f"{size} ({count} proof{'s' if count != 1 else ''})"
            for size, count in sorted(report.total.as_if_unpriced.items())
        )
        out.append(
            f"* as-if Atlantic total leaves out proofs it cannot price: {missing}; "
            + (
                "price not configured: set prover.atlantic_price_per_job_size"
                if any(size != UNKNOWN_STEPS for size in report.total.as_if_unpriced)
                else "their trace size was not recorded"
            )
        )
    return out
