"""/healthz and the keeper's funds: degraded while they are low or a job waits for them,
with the reason in words; the body carries the last reading."""

from __future__ import annotations

from test_health import NOW, THRESHOLDS, healthy_state

from keeper.engine.funds import CostFigure, FundsStatus
from keeper.ops.health import assess, health_report

LOW = FundsStatus(10**18, CostFigure(3 * 10**17, "default", 0), 10)
PLENTY = FundsStatus(10 * 10**18, CostFigure(3 * 10**17, "ledger", 4), 10)


def test_low_funds_degrade_with_the_reason() -> None:
    state = healthy_state()
    state.funds = LOW.as_json()
    state.funds_low = LOW.low_reason(0xABC)
    status, reasons = assess(state, THRESHOLDS, NOW)
    assert status == "degraded"
    (reason,) = reasons
    assert "pays for 3 rebalance(s)" in reason and "funds.min_rebalances = 10" in reason


def test_enough_funds_are_ok_and_shown() -> None:
    state = healthy_state()
    state.funds = PLENTY.as_json()
    state.funds_low = PLENTY.low_reason(0xABC)
    assert assess(state, THRESHOLDS, NOW) == ("ok", [])
    body = health_report(state, THRESHOLDS, NOW)
    assert body["funds"]["rebalances_funded"] == 33
    assert body["funds"]["balance_strk"] == "10.000000"
    assert body["funds"]["waiting"] is None


def test_a_job_waiting_for_funds_degrades_even_when_funds_are_not_low() -> None:
    state = healthy_state()
    state.funds = PLENTY.as_json()
    state.funds_waiting = "insufficient_funds: epoch 3 needs ..."
    status, reasons = assess(state, THRESHOLDS, NOW)
    assert status == "degraded" and reasons == [state.funds_waiting]
    assert health_report(state, THRESHOLDS, NOW)["funds"]["waiting"] == state.funds_waiting
