"""keeper.engine.retries: a failing step gives up by time, a failed run runs again after a
cool-down, and money rules park an epoch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.engine.retries import RetryRules, step_backoff_s

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
rules_st = st.builds(
    lambda base, factor, window, paid: RetryRules(
        step_window_s=window, cooldown_s=base, cooldown_max_s=base * factor, max_paid_failures=paid
    ),
    st.floats(min_value=0.01, max_value=1e4),
    st.floats(min_value=1, max_value=1e4),
    st.floats(min_value=0.01, max_value=1e6),
    st.integers(min_value=1, max_value=20),
)


@given(rules_st, st.integers(min_value=1, max_value=10_000))
def test_cooldown_doubles_per_run_up_to_the_cap(rules: RetryRules, run: int) -> None:
    cooldown = rules.cooldown(run)
    assert rules.cooldown_s <= cooldown <= rules.cooldown_max_s
    assert rules.cooldown(run + 1) >= cooldown
    assert rules.cooldown(1) == rules.cooldown_s


@given(rules_st, st.integers(min_value=1, max_value=100), st.integers(min_value=0, max_value=50))
def test_a_failed_run_runs_again_unless_money_parks_it(
    rules: RetryRules, run: int, paid: int
) -> None:
    after = rules.retry_after(now=NOW, run=run, paid_failures=paid)
    if paid >= rules.max_paid_failures:
        assert after is None  # parked: only the operator runs it again
    else:
        assert after == NOW + timedelta(seconds=rules.cooldown(run))


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=0, max_value=2 * 10**9))
def test_a_step_gives_up_exactly_at_the_window(window_s: int, elapsed_ms: int) -> None:
    rules = RetryRules(step_window_s=window_s)
    since = NOW - timedelta(milliseconds=elapsed_ms)
    assert rules.step_gives_up(since, NOW) == (elapsed_ms >= window_s * 1000)


def test_failures_free_of_charge_never_park() -> None:
    rules = RetryRules(cooldown_s=60, cooldown_max_s=3600, max_paid_failures=3)
    assert all(rules.retry_after(now=NOW, run=r, paid_failures=0) for r in range(1, 1000))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"step_window_s": 0},
        {"cooldown_s": 0},
        {"cooldown_s": 10, "cooldown_max_s": 5},
        {"max_paid_failures": 0},
    ],
)
def test_nonsense_rules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryRules(**kwargs)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0.01, max_value=100))
def test_step_backoff_doubles_and_is_capped(attempts: int, poll: float) -> None:
    delay = step_backoff_s(attempts, poll)
    assert delay == min(60, poll * 2 ** min(attempts - 1, 32))
    assert step_backoff_s(attempts + 1, poll) >= delay
