"""The ``cheapest`` prover policy: per job, Stone+Integrity or Atlantic, whichever the cost
ledger says costs less. Pure: the caller reads the ledger (``Ledger.executed_allocations``)
and the clock, and proves with the policy the decision names.

What is compared is what differs between the two paths (both trace locally and both pay
the ``execution`` transaction, so those are left out):

- Stone+Integrity, measured: the median, over the last ``recent`` Stone allocations
  executed within ``max_age``, of
  ``proof CPU seconds x prover.cpu_usd_per_hour / 3600``
  ``+ the fees of all its fact_registration transactions (FRI) / 10^18 x prover.strk_usd``.
  An allocation counts only when fully measured: proof CPU seconds recorded, at least one
  registration transaction (a fact found already registered measured no fee), every fee
  of it in FRI. The median, because one registration that needed a second try must not
  decide the next ten jobs.
- Atlantic, priced: the configured price of the job at hand's size
  (``prover.atlantic_price_per_job_size``, for the size the job would be declared with).
  Nothing needs measuring: with PROOF_VERIFICATION_ON_L2, Atlantic's price includes the
  verification, and the price it costs is the configured one.

The rules, in order:

0. The job already has an Atlantic query (a run before a crash or a failure created it):
   Atlantic, to resume that query, never a second proof paid for on the other path.
1. Only one of the two may prove now (the router accepts only one path, Stone is not
   configured, Atlantic's breaker or credit gate is shut): that one.
2. The costs cannot be compared: ``stone_then_atlantic``, saying why (``prover.strk_usd``
   unset, Atlantic prices not in USD, the job's n_steps unknown, no price for its size).
3. No fully measured Stone allocation within ``max_age``: Stone, to measure it (as
   ``stone_then_atlantic``: Atlantic still takes over if Stone fails). This is also how
   Stone is measured again while Atlantic wins: its figures age out, and once every
   ``max_age`` one job goes to Stone. Only recent figures count because L2 gas prices
   and the STRK price move.
4. Stone's median at most Atlantic's price (both to the micro-dollar): Stone, with
   Atlantic as its fallback (``stone_then_atlantic``). A tie goes to Stone: local, no
   third party, and it keeps its own figures fresh. Otherwise Atlantic (``atlantic_only``;
   if it fails the run fails, and the next run decides again, without Atlantic once its
   breaker or credit gate has shut).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from keeper.store.ledger import AllocationCost
from prover.settings import PolicyName, ProverSettings

CheapestProver = Literal["stone", "atlantic"]
CHEAPEST_PROVERS: tuple[CheapestProver, ...] = ("stone", "atlantic")

RECENT_STONE_ALLOCATIONS = 5  # Stone figures the median is taken over, newest first
MAX_FIGURE_AGE = timedelta(days=7)  # older Stone figures do not count
FRI_PER_STRK = 10**18
_MICRO_USD = Decimal("0.000001")
_SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class StoneFigure:
    """What one fully measured Stone allocation cost on the path that differs."""

    job_id: str
    epoch: int
    confirmed_at: datetime
    proof_cpu_s: float
    verification_fri: int
    usd: Decimal


@dataclass(frozen=True)
class CheapestDecision:
    """Which prover path the next job takes, the existing policy to prove it with, and why."""

    prover: CheapestProver
    policy: PolicyName  # stone_then_atlantic | stone_only | atlantic_only
    reason: str  # for the log: the figures and the rule that decided
    compared: bool  # True: decided on measured figures; False: a fallback or a probe
    stone_usd: Decimal | None  # the median Stone+Integrity cost, when measured
    atlantic_usd: Decimal | None  # Atlantic's price for the job, when configured
    figures: int  # Stone allocations the median is taken over

    def as_log(self) -> dict[str, Any]:
        """Fields for a structured log line (USD as strings, to the micro-dollar)."""
        return {
            "prover": self.prover,
            "policy": self.policy,
            "reason": self.reason,
            "compared": self.compared,
            "stone_usd": None if self.stone_usd is None else _usd(self.stone_usd),
            "atlantic_usd": None if self.atlantic_usd is None else _usd(self.atlantic_usd),
            "figures": self.figures,
        }


def stone_usd(
    proof_cpu_s: float, verification_fri: int, *, cpu_usd_per_hour: Decimal, strk_usd: Decimal
) -> Decimal:
    """The USD cost of one Stone+Integrity proof: its CPU time and its Integrity fees."""
    cpu = Decimal(str(proof_cpu_s)) * cpu_usd_per_hour / _SECONDS_PER_HOUR
    return cpu + Decimal(verification_fri) * strk_usd / FRI_PER_STRK


def _measured(allocation: AllocationCost) -> tuple[float, int] | str:
    """(proof CPU seconds, registration fees in FRI) of a fully measured allocation, else
    why it is not."""
    if allocation.proof_cpu_s is None:
        return "no proof CPU seconds recorded"
    if allocation.verification_txs == 0:
        return "no fact registration paid (found already registered)"
    if set(allocation.verification_fees) != {"FRI"}:
        return "registration fees not in FRI"
    return allocation.proof_cpu_s, allocation.verification_fees["FRI"]


def stone_figures(
    allocations: Sequence[AllocationCost],
    *,
    now: datetime,
    cpu_usd_per_hour: Decimal,
    strk_usd: Decimal,
    recent: int = RECENT_STONE_ALLOCATIONS,
    max_age: timedelta = MAX_FIGURE_AGE,
) -> tuple[list[StoneFigure], Counter[str]]:
    """The newest ``recent`` fully measured Stone allocations confirmed within ``max_age``
    of ``now`` (newest first), and why the other Stone allocations of that window that
    were looked at do not count."""
    _check_window(recent, max_age)
    window = sorted(
        (a for a in allocations if a.prover == "stone" and a.confirmed_at >= now - max_age),
        key=lambda a: (a.confirmed_at, a.job_id),
        reverse=True,
    )
    figures: list[StoneFigure] = []
    left_out: Counter[str] = Counter()
    for allocation in window:
        if len(figures) == recent:
            break
        measured = _measured(allocation)
        if isinstance(measured, str):
            left_out[measured] += 1
            continue
        cpu_s, fri = measured
        figures.append(
            StoneFigure(
                job_id=allocation.job_id,
                epoch=allocation.epoch,
                confirmed_at=allocation.confirmed_at,
                proof_cpu_s=cpu_s,
                verification_fri=fri,
                usd=stone_usd(
                    cpu_s, fri, cpu_usd_per_hour=cpu_usd_per_hour, strk_usd=strk_usd
                ),
            )
        )
    return figures, left_out


def _check_window(recent: int, max_age: timedelta) -> None:
    if isinstance(recent, bool) or not isinstance(recent, int) or recent < 1:
        raise ValueError(f"recent must be a whole number of at least 1, got {recent!r}")
    if max_age <= timedelta(0):
        raise ValueError(f"max_age must be positive, got {max_age}")


def median_usd(amounts: Sequence[Decimal]) -> Decimal:
    """The median of USD amounts (the midpoint of the two middle ones for an even count)."""
    if not amounts:
        raise ValueError("no amounts to take the median of")
    ordered = sorted(amounts)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def decide(
    allocations: Sequence[AllocationCost],
    *,
    settings: ProverSettings,
    n_steps: int | None,
    candidates: Collection[str],
    now: datetime,
    has_atlantic_query: bool = False,
    recent: int = RECENT_STONE_ALLOCATIONS,
    max_age: timedelta = MAX_FIGURE_AGE,
) -> CheapestDecision:
    """The prover path for the next job (of ``n_steps`` steps), from the executed
    ``allocations`` the ledger has (any span; only Stone's within ``max_age`` of ``now``
    count). ``candidates``: which of stone and atlantic may prove it now;
    ``has_atlantic_query``: the job has an Atlantic query for its output already."""
    _check_window(recent, max_age)
    allowed = _candidates(candidates)
    if has_atlantic_query and "atlantic" in allowed:
        return _decision(
            "atlantic",
            allowed,
            "this job already has an Atlantic query for its output: resuming it rather "
            "than paying for a second proof",
            None,
            None,
            0,
        )
    if len(allowed) == 1:
        only = allowed[0]
        return _decision(
            only,
            allowed,
            f"only {_PATH_NAMES[only]} can prove this job now (the router accepts no other "
            "proof, or the other prover is not configured or is paused)",
            None,
            None,
            0,
        )
    prices = _comparable(settings, n_steps)
    if isinstance(prices, str):
        return _decision(
            "stone", allowed, f"cannot compare costs: {prices}; proving stone_then_atlantic",
            None, None, 0, compared=False,
        )
    size, atlantic, strk_usd = prices
    figures, left_out = stone_figures(
        allocations,
        now=now,
        cpu_usd_per_hour=settings.cpu_usd_per_hour,
        strk_usd=strk_usd,
        recent=recent,
        max_age=max_age,
    )
    atlantic_text = f"Atlantic USD {_usd(atlantic)} (job size {size})"
    if not figures:
        return _decision(
            "stone", allowed,
            f"no Stone+Integrity cost measured in the last {_age(max_age)}"
            f"{_left_out_text(left_out)}: proving with Stone to measure it "
            f"(Atlantic if it fails); {atlantic_text}",
            None, atlantic, 0, compared=False,
        )
    stone = median_usd([figure.usd for figure in figures])
    stone_text = (
        f"Stone+Integrity USD {_usd(stone)} (median of the last {len(figures)} measured "
        f"Stone allocation{'s' if len(figures) != 1 else ''} within {_age(max_age)})"
    )
    if _micro(stone) <= _micro(atlantic):
        reason = f"{stone_text} <= {atlantic_text}: Stone (Atlantic if it fails)"
        return _decision("stone", allowed, reason, stone, atlantic, len(figures))
    reason = f"{atlantic_text} < {stone_text}: Atlantic"
    return _decision("atlantic", allowed, reason, stone, atlantic, len(figures))


_PATH_NAMES: dict[CheapestProver, str] = {"stone": "Stone+Integrity", "atlantic": "Atlantic"}


def _candidates(candidates: Collection[str]) -> tuple[CheapestProver, ...]:
    unknown = sorted(set(candidates) - set(CHEAPEST_PROVERS))
    if unknown:
        raise ValueError(
            f"the cheapest policy chooses between stone and atlantic, not {', '.join(unknown)}"
        )
    allowed = tuple(p for p in CHEAPEST_PROVERS if p in candidates)
    if not allowed:
        raise ValueError("no prover may prove the job: nothing to choose from")
    return allowed


def _comparable(
    settings: ProverSettings, n_steps: int | None
) -> tuple[str, Decimal, Decimal] | str:
    """(the job's Atlantic size, its price, the STRK price) when the costs can be
    compared, else why not."""
    strk_usd = settings.strk_usd
    if strk_usd is None:
        return (
            "prover.strk_usd is not set (the keeper has no STRK price to weigh Integrity's "
            "fees, paid in STRK, against Atlantic's USD price)"
        )
    if settings.atlantic_price_currency != "USD":
        return (
            f"Atlantic prices are in {settings.atlantic_price_currency}, not USD "
            "(prover.atlantic_price_currency)"
        )
    if n_steps is None:
        return "the job's trace size (n_steps) is not known, so neither is its Atlantic price"
    size = settings.atlantic_declared_size(n_steps)
    price = settings.atlantic_price(size)
    if price is None:
        return (
            f"no Atlantic price for job size {size} ({n_steps} steps): set "
            f"prover.atlantic_price_per_job_size.{size}"
        )
    return size, price, strk_usd


def _decision(
    prover: CheapestProver,
    allowed: tuple[CheapestProver, ...],
    reason: str,
    stone: Decimal | None,
    atlantic: Decimal | None,
    figures: int,
    *,
    compared: bool | None = None,
) -> CheapestDecision:
    return CheapestDecision(
        prover=prover,
        policy=policy_for(prover, allowed),
        reason=reason,
        compared=(stone is not None and atlantic is not None) if compared is None else compared,
        stone_usd=stone,
        atlantic_usd=atlantic,
        figures=figures,
    )


def policy_for(prover: CheapestProver, allowed: Collection[str]) -> PolicyName:
    """The existing policy that proves on ``prover``'s path: Stone keeps Atlantic as its
    fallback when Atlantic may prove; Atlantic goes alone (no policy falls back to Stone)."""
    if prover == "atlantic":
        return "atlantic_only"
    return "stone_then_atlantic" if "atlantic" in allowed else "stone_only"


def _micro(value: Decimal) -> Decimal:
    return value.quantize(_MICRO_USD, rounding=ROUND_HALF_EVEN)


def _usd(value: Decimal) -> str:
    return f"{_micro(value).normalize():f}"


def _age(age: timedelta) -> str:
    if age % timedelta(days=1) == timedelta(0):
        days = age // timedelta(days=1)
        return f"{days} day{'s' if days != 1 else ''}"
    if age % timedelta(hours=1) == timedelta(0):
        hours = age // timedelta(hours=1)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{age.total_seconds():g} s"


def _left_out_text(left_out: Counter[str]) -> str:
    if not left_out:
        return ""
    parts = ", ".join(f"{count} with {why}" for why, count in sorted(left_out.items()))
    return f" (Stone allocations not fully measured: {parts})"
