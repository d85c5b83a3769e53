"""keeper.engine.cheapest: Stone+Integrity or Atlantic, from the ledger's measured figures."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from keeper.engine.cheapest import (
    FRI_PER_STRK,
    MAX_FIGURE_AGE,
    RECENT_STONE_ALLOCATIONS,
    decide,
    median_usd,
    policy_for,
    stone_figures,
    stone_usd,
)
from keeper.store.ledger import AllocationCost
from prover.settings import POLICY_NAMES, POLICY_PROVERS, ProverSettings

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
STRK = FRI_PER_STRK
SMALL = 4096  # n_steps of a job of Atlantic size S
BOTH = ("stone", "atlantic")


def _settings(**fields: Any) -> ProverSettings:
    base: dict[str, Any] = {
        "strk_usd": Decimal("0.5"),
        "cpu_usd_per_hour": Decimal("3.6"),  # a tenth of a cent per CPU second
        "atlantic_price_per_job_size": {"S": Decimal("2"), "M": Decimal("7")},
    }
    return ProverSettings(**(base | fields))


def _stone(
    epoch: int,
    *,
    fri: int = 2 * STRK,
    cpu: float | None = 100.0,
    age: timedelta = timedelta(hours=1),
    txs: int = 3,
    unit: str = "FRI",
    prover: str = "stone",
) -> AllocationCost:
    """An executed allocation as the ledger costs it (a Stone job by default)."""
    return AllocationCost(
        job_id=f"0x1:{epoch}",
        epoch=epoch,
        prover=prover,
        trigger="interval",
        confirmed_at=NOW - age,
        n_steps=SMALL,
        trace_cpu_s=1.0,
        proof_cpu_s=cpu,
        verification_fees={unit: fri} if txs else {},
        verification_txs=txs,
        execution_fees={"FRI": STRK // 10},
        execution_txs=1,
        atlantic_job_size="S",
        atlantic_usd=Decimal("2"),
        atlantic_unpriced=None,
    )


def _usd(cpu: float, fri: int, settings: ProverSettings) -> Decimal:
    assert settings.strk_usd is not None
    return (
        Decimal(str(cpu)) * settings.cpu_usd_per_hour / 3600
        + Decimal(fri) * settings.strk_usd / STRK
    )


# --- settings --------------------------------------------------------------------------


def test_cheapest_is_a_policy_between_stone_and_atlantic() -> None:
    assert POLICY_PROVERS["cheapest"] == ("stone", "atlantic")
    assert "cheapest" in POLICY_NAMES
    assert ProverSettings(policy="cheapest").policy == "cheapest"


def test_money_settings_default_to_no_strk_price_and_free_cpu() -> None:
    settings = ProverSettings()
    assert settings.strk_usd is None
    assert settings.cpu_usd_per_hour == 0


def test_money_settings_read_toml_numbers_exactly() -> None:
    settings = ProverSettings(strk_usd=0.15, cpu_usd_per_hour="0.042")  # type: ignore[arg-type]
    assert settings.strk_usd == Decimal("0.15")
    assert settings.cpu_usd_per_hour == Decimal("0.042")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"strk_usd": 0}, "strk_usd"),
        ({"strk_usd": -1}, "strk_usd"),
        ({"strk_usd": float("nan")}, "strk_usd"),
        ({"strk_usd": "a lot"}, "strk_usd"),
        ({"cpu_usd_per_hour": -0.01}, "cpu_usd_per_hour"),
        ({"cpu_usd_per_hour": float("inf")}, "cpu_usd_per_hour"),
    ],
)
def test_bad_money_settings_are_refused(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        ProverSettings(**fields)


# --- pure pieces -----------------------------------------------------------------------


def test_stone_usd_prices_cpu_time_and_integrity_fees() -> None:
    # 100 s at USD 3.6/h = 0.1; 4.4 STRK at USD 0.15 = 0.66
    cost = stone_usd(
        100.0, 44 * STRK // 10, cpu_usd_per_hour=Decimal("3.6"), strk_usd=Decimal("0.15")
    )
    assert cost == Decimal("0.76")


@given(
    cpu=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    fri=st.integers(min_value=0, max_value=10**24),
    extra=st.integers(min_value=1, max_value=10**20),
)
def test_stone_usd_grows_with_fees(cpu: float, fri: int, extra: int) -> None:
    rates = {"cpu_usd_per_hour": Decimal("1.5"), "strk_usd": Decimal("0.3")}
    assert stone_usd(cpu, fri + extra, **rates) > stone_usd(cpu, fri, **rates)
    assert stone_usd(cpu, fri, cpu_usd_per_hour=Decimal(0), strk_usd=Decimal(1)) == (
        Decimal(fri) / STRK
    )


@given(st.lists(st.decimals(min_value=0, max_value=10**6, places=6), min_size=1, max_size=25))
def test_median_usd_is_the_median(amounts: list[Decimal]) -> None:
    assert median_usd(amounts) == statistics.median(amounts)
    assert min(amounts) <= median_usd(amounts) <= max(amounts)


def test_median_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no amounts"):
        median_usd([])


@pytest.mark.parametrize(
    ("prover", "allowed", "policy"),
    [
        ("stone", BOTH, "stone_then_atlantic"),
        ("stone", ("stone",), "stone_only"),
        ("atlantic", BOTH, "atlantic_only"),
        ("atlantic", ("atlantic",), "atlantic_only"),
    ],
)
def test_policy_for_maps_onto_the_existing_policies(
    prover: Any, allowed: tuple[str, ...], policy: str
) -> None:
    assert policy_for(prover, allowed) == policy


def test_stone_figures_keep_the_newest_fully_measured_within_the_window() -> None:
    allocations = [
        _stone(1, age=timedelta(days=8)),  # stale
        _stone(2, age=timedelta(hours=5), cpu=None),  # no CPU recorded
        _stone(3, age=timedelta(hours=4), txs=0),  # fact was already registered
        _stone(4, age=timedelta(hours=3), unit="WEI"),
        _stone(5, age=timedelta(hours=2), fri=3 * STRK),
        _stone(6, age=timedelta(hours=1), prover="atlantic"),
        _stone(7, age=timedelta(minutes=1), fri=STRK, cpu=50.0),
    ]
    figures, left_out = stone_figures(
        allocations, now=NOW, cpu_usd_per_hour=Decimal("3.6"), strk_usd=Decimal("0.5")
    )
    assert [f.epoch for f in figures] == [7, 5]
    assert figures[0].verification_fri == STRK
    assert figures[0].usd == Decimal("0.05") + Decimal("0.5")
    assert left_out == {
        "no proof CPU seconds recorded": 1,
        "no fact registration paid (found already registered)": 1,
        "registration fees not in FRI": 1,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"recent": 0}, "recent must be"), ({"max_age": timedelta(0)}, "max_age must be positive")],
)
def test_a_window_of_nothing_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stone_figures([], now=NOW, cpu_usd_per_hour=Decimal(0), strk_usd=Decimal(1), **kwargs)
    with pytest.raises(ValueError, match=message):
        decide([], settings=_settings(), n_steps=SMALL, candidates=BOTH, now=NOW, **kwargs)


# --- the decision ----------------------------------------------------------------------


def test_stone_when_its_measured_cost_is_lower() -> None:
    # each: 100 s x USD 3.6/h = 0.1, plus 2 STRK x 0.5 = 1 -> 1.1 < Atlantic's 2
    decision = decide(
        [_stone(1), _stone(2)], settings=_settings(), n_steps=SMALL, candidates=BOTH, now=NOW
    )
    assert (decision.prover, decision.policy, decision.compared) == (
        "stone",
        "stone_then_atlantic",
        True,
    )
    assert decision.stone_usd == Decimal("1.1")
    assert decision.atlantic_usd == Decimal("2")
    assert decision.figures == 2
    assert decision.reason == (
        "Stone+Integrity USD 1.1 (median of the last 2 measured Stone allocations within "
        "7 days) <= Atlantic USD 2 (job size S): Stone (Atlantic if it fails)"
    )


def test_atlantic_when_it_is_cheaper() -> None:
    dear = [_stone(1, fri=5 * STRK), _stone(2, fri=7 * STRK), _stone(3, fri=STRK)]
    decision = decide(dear, settings=_settings(), n_steps=SMALL, candidates=BOTH, now=NOW)
    assert (decision.prover, decision.policy, decision.compared) == (
        "atlantic",
        "atlantic_only",
        True,
    )
    assert decision.stone_usd == Decimal("2.6")  # median of 1.1, 2.6, 3.6
    assert decision.reason.startswith("Atlantic USD 2 (job size S) < Stone+Integrity USD 2.6")
    assert decision.reason.endswith(": Atlantic")
    assert decision.as_log()["stone_usd"] == "2.6"


def test_a_tie_goes_to_stone() -> None:
    # 0 s of CPU, 4 STRK x 0.5 = exactly Atlantic's USD 2
    decision = decide(
        [_stone(1, fri=4 * STRK, cpu=0.0)],
        settings=_settings(),
        n_steps=SMALL,
        candidates=BOTH,
        now=NOW,
    )
    assert decision.stone_usd == decision.atlantic_usd == Decimal("2")
    assert decision.prover == "stone"


def test_costs_within_a_micro_dollar_tie() -> None:
    settings = _settings(cpu_usd_per_hour=Decimal(0))
    just_above = 4 * STRK + 8 * 10**11  # USD 2.0000004
    decision = decide(
        [_stone(1, fri=just_above)], settings=settings, n_steps=SMALL, candidates=BOTH, now=NOW
    )
    assert decision.stone_usd is not None and decision.stone_usd > Decimal(2)
    assert decision.prover == "stone"
    dearer = 4 * STRK + 2 * 10**12  # USD 2.000001
    decision = decide(
        [_stone(1, fri=dearer)], settings=settings, n_steps=SMALL, candidates=BOTH, now=NOW
    )
    assert decision.prover == "atlantic"


def test_before_anything_is_measured_stone_goes_first_to_measure() -> None:
    decision = decide([], settings=_settings(), n_steps=SMALL, candidates=BOTH, now=NOW)
    assert (decision.prover, decision.policy, decision.compared) == (
        "stone",
        "stone_then_atlantic",
        False,
    )
    assert decision.atlantic_usd == Decimal("2") and decision.stone_usd is None
    assert decision.reason == (
        "no Stone+Integrity cost measured in the last 7 days: proving with Stone to measure "
        "it (Atlantic if it fails); Atlantic USD 2 (job size S)"
    )


def test_atlantic_needs_no_measurement_of_its_own() -> None:
    # Only Stone figures exist, no Atlantic allocation at all: Atlantic's configured price
    # is what it costs, so the comparison is made.
    decision = decide(
        [_stone(1, fri=9 * STRK)], settings=_settings(), n_steps=SMALL, candidates=BOTH, now=NOW
    )
    assert (decision.prover, decision.compared) == ("atlantic", True)


def test_stale_figures_send_one_job_back_to_stone() -> None:
    dear = _stone(1, fri=9 * STRK, age=MAX_FIGURE_AGE - timedelta(seconds=1))
    assert decide([dear], settings=_settings(), n_steps=SMALL, candidates=BOTH,
                  now=NOW).prover == "atlantic"
    later = NOW + timedelta(seconds=2)  # the only figure is now older than the window
    decision = decide([dear], settings=_settings(), n_steps=SMALL, candidates=BOTH, now=later)
    assert (decision.prover, decision.compared) == ("stone", False)
    assert "to measure" in decision.reason


def test_unmeasured_stone_allocations_are_named() -> None:
    decision = decide(
        [_stone(1, txs=0), _stone(2, cpu=None)],
        settings=_settings(),
        n_steps=SMALL,
        candidates=BOTH,
        now=NOW,
    )
    assert decision.prover == "stone"
    assert (
        "(Stone allocations not fully measured: 1 with no fact registration paid (found "
        "already registered), 1 with no proof CPU seconds recorded)"
    ) in decision.reason


@pytest.mark.parametrize(
    ("settings", "n_steps", "why"),
    [
        (_settings(strk_usd=None), SMALL, "prover.strk_usd is not set"),
        (_settings(atlantic_price_currency="EUR"), SMALL, "Atlantic prices are in EUR, not USD"),
        (_settings(), None, "the job's trace size (n_steps) is not known"),
        (
            _settings(),
            40_000_000,
            "no Atlantic price for job size L (40000000 steps): set "
            "prover.atlantic_price_per_job_size.L",
        ),
        (
            _settings(atlantic_price_per_job_size={}),
            SMALL,
            "no Atlantic price for job size S",
        ),
    ],
)
def test_when_costs_cannot_be_compared_it_falls_back_to_stone_then_atlantic(
    settings: ProverSettings, n_steps: int | None, why: str
) -> None:
    dear = [_stone(1, fri=100 * STRK)]  # figures exist, but cannot be weighed
    decision = decide(dear, settings=settings, n_steps=n_steps, candidates=BOTH, now=NOW)
    assert (decision.prover, decision.policy, decision.compared) == (
        "stone",
        "stone_then_atlantic",
        False,
    )
    assert decision.reason.startswith("cannot compare costs: ")
    assert why in decision.reason
    assert decision.reason.endswith("; proving stone_then_atlantic")


def test_the_declared_job_size_override_is_the_size_priced() -> None:
    settings = _settings(atlantic_declared_job_size="M")  # USD 7, not S's 2
    decision = decide(
        [_stone(1, fri=9 * STRK)], settings=settings, n_steps=SMALL, candidates=BOTH, now=NOW
    )
    assert decision.atlantic_usd == Decimal("7")
    assert decision.prover == "stone"  # 4.6 <= 7
    assert "(job size M)" in decision.reason


@pytest.mark.parametrize(
    ("candidates", "prover", "policy"),
    [(("stone",), "stone", "stone_only"), (("atlantic",), "atlantic", "atlantic_only")],
)
def test_a_single_candidate_is_taken_whatever_the_figures(
    candidates: tuple[str, ...], prover: str, policy: str
) -> None:
    for settings in (_settings(), _settings(strk_usd=None)):
        for figures in ([], [_stone(1, fri=100 * STRK)], [_stone(1, fri=0)]):
            decision = decide(
                figures, settings=settings, n_steps=SMALL, candidates=candidates, now=NOW
            )
            assert (decision.prover, decision.policy, decision.compared) == (prover, policy, False)
            assert decision.reason.startswith("only ")


@pytest.mark.parametrize(
    ("candidates", "message"),
    [((), "nothing to choose from"), (("stone", "dev"), "not dev"), (("sharp",), "not sharp")],
)
def test_bad_candidates_are_refused(candidates: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide([], settings=_settings(), n_steps=SMALL, candidates=candidates, now=NOW)


# --- the decision, for any figures -------------------------------------------------------

figure = st.tuples(
    st.integers(min_value=0, max_value=20 * 24 * 60),  # age in minutes (up to 20 days)
    st.floats(min_value=0, max_value=50_000, allow_nan=False),  # proof CPU seconds
    st.integers(min_value=0, max_value=50 * STRK),  # registration fees
    st.sampled_from(["stone", "stone", "atlantic", "dev"]),
    st.booleans(),  # fully measured
)


def _allocations(
    figures: Sequence[tuple[int, float, int, str, bool]],
) -> list[AllocationCost]:
    out = []
    for epoch, (minutes, cpu, fri, prover, measured) in enumerate(figures):
        allocation = _stone(epoch, fri=fri, cpu=cpu, age=timedelta(minutes=minutes),
                            prover=prover)
        out.append(allocation if measured else replace(allocation, proof_cpu_s=None))
    return out


@given(
    figures=st.lists(figure, max_size=25),
    price=st.decimals(min_value=0, max_value=100, places=2),
    strk=st.decimals(min_value=Decimal("0.01"), max_value=10, places=2),
    rate=st.decimals(min_value=0, max_value=5, places=3),
    recent=st.integers(min_value=1, max_value=8),
)
def test_the_decision_follows_the_median_of_the_recent_measured_stone_figures(
    figures: list[tuple[int, float, int, str, bool]],
    price: Decimal,
    strk: Decimal,
    rate: Decimal,
    recent: int,
) -> None:
    settings = _settings(
        strk_usd=strk, cpu_usd_per_hour=rate, atlantic_price_per_job_size={"S": price}
    )
    allocations = _allocations(figures)
    decision = decide(
        allocations, settings=settings, n_steps=SMALL, candidates=BOTH, now=NOW, recent=recent
    )
    fresh = sorted(
        (
            a for a in allocations
            if a.prover == "stone" and a.proof_cpu_s is not None
            and NOW - a.confirmed_at <= MAX_FIGURE_AGE
        ),
        key=lambda a: (a.confirmed_at, a.job_id),
    )[-recent:]
    assert decision.atlantic_usd == price
    assert decision.figures == len(fresh)
    if not fresh:
        assert (decision.prover, decision.compared, decision.stone_usd) == ("stone", False, None)
        return
    costs = [_usd(a.proof_cpu_s or 0.0, a.verification_fees["FRI"], settings) for a in fresh]
    expected = statistics.median(costs)
    assert decision.stone_usd == expected
    quantum = Decimal("0.000001")
    cheaper = "stone" if expected.quantize(quantum) <= price.quantize(quantum) else "atlantic"
    assert decision.prover == cheaper
    assert decision.policy == {"stone": "stone_then_atlantic", "atlantic": "atlantic_only"}[cheaper]
    assert decision.compared


@given(figures=st.lists(figure, max_size=15), stale=st.lists(figure, max_size=10))
def test_figures_older_than_the_window_never_change_the_decision(
    figures: list[tuple[int, float, int, str, bool]],
    stale: list[tuple[int, float, int, str, bool]],
) -> None:
    window = int(MAX_FIGURE_AGE / timedelta(minutes=1))
    old = [(window + 1 + minutes, cpu, fri, p, m) for minutes, cpu, fri, p, m in stale]
    recent_only = decide(
        _allocations(figures), settings=_settings(), n_steps=SMALL, candidates=BOTH, now=NOW
    )
    with_stale = decide(
        _allocations(figures + old), settings=_settings(), n_steps=SMALL, candidates=BOTH,
        now=NOW,
    )
    assert (with_stale.prover, with_stale.stone_usd, with_stale.figures) == (
        recent_only.prover,
        recent_only.stone_usd,
        recent_only.figures,
    )


def test_only_the_newest_figures_count() -> None:
    cheap_new = [_stone(e, fri=STRK, age=timedelta(hours=e)) for e in range(1, 6)]
    dear_older = [_stone(e, fri=50 * STRK, age=timedelta(hours=e)) for e in range(6, 16)]
    decision = decide(
        dear_older + cheap_new, settings=_settings(), n_steps=SMALL, candidates=BOTH, now=NOW
    )
    assert decision.figures == RECENT_STONE_ALLOCATIONS
    assert (decision.prover, decision.stone_usd) == ("stone", Decimal("0.6"))


@pytest.mark.parametrize("settings", [_settings(), _settings(strk_usd=None)])
def test_a_job_with_an_atlantic_query_resumes_it(settings: ProverSettings) -> None:
    cheap_stone = [_stone(1, fri=0, cpu=0.0)]
    decision = decide(
        cheap_stone, settings=settings, n_steps=SMALL, candidates=BOTH, now=NOW,
        has_atlantic_query=True,
    )
    assert (decision.prover, decision.policy, decision.compared) == (
        "atlantic",
        "atlantic_only",
        False,
    )
    assert "resuming it" in decision.reason
    # Atlantic may not prove now (breaker open, the router refuses its proofs): Stone.
    decision = decide(
        cheap_stone, settings=settings, n_steps=SMALL, candidates=("stone",), now=NOW,
        has_atlantic_query=True,
    )
    assert (decision.prover, decision.policy) == ("stone", "stone_only")
