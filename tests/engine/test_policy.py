"""keeper.engine.policy: when a rebalance is due, and which proofs the router accepts."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.governance import GovernanceParams, param_names
from keeper.engine.policy import (
    BPS,
    Decision,
    RouterSnapshot,
    accepted_provers,
    decide,
    drift_bps,
    halt_reason,
)

ROUTER_SOURCE = Path(__file__).parents[2] / "contracts" / "src" / "strategy_router_v2.cairo"
POLICIES = ("stone_then_atlantic", "stone_only", "atlantic_only", "dev")
OURS = 0x1234
OUR_CHAIN = 0xABCD

felts = st.integers(min_value=0, max_value=2**251)
bps = st.integers(min_value=0, max_value=BPS)


def governance(**overrides: int) -> GovernanceParams:
    base = GovernanceParams(
        rebalance_interval_s=3600,
        drift_threshold_bps=500,
        max_single_bps=6000,
        min_diversification=2,
        min_security_bits=96,
        fact_registry=0xFAC7,
        program_hash=OURS,
        child_program_hash=OUR_CHAIN,
        risk_engine=0x5EE,
    )
    return replace(base, **overrides)


governances = st.builds(
    GovernanceParams,
    rebalance_interval_s=st.integers(min_value=1, max_value=2**64 - 1),
    drift_threshold_bps=bps,
    max_single_bps=st.integers(min_value=1, max_value=BPS),
    min_diversification=st.integers(min_value=0, max_value=16),
    min_security_bits=st.integers(min_value=0, max_value=256),
    fact_registry=felts,
    program_hash=st.sampled_from([0, OURS, 0x999]),
    child_program_hash=st.sampled_from([0, OUR_CHAIN, 0x888]),
    risk_engine=felts,
)
allocations = st.lists(bps, min_size=1, max_size=16).map(tuple)


# --- GovernanceParams ----------------------------------------------------------------


def test_field_order_is_the_contracts_get_governance_params_order() -> None:
    source = ROUTER_SOURCE.read_text(encoding="utf-8")
    struct = re.search(r"pub struct GovernanceParams \{(.*?)\}", source, re.DOTALL)
    assert struct is not None
    names = tuple(re.findall(r"pub (\w+):", struct.group(1)))
    assert names == param_names()


@given(gov=governances, index=st.integers(min_value=0, max_value=8), new=felts)
def test_apply_change_changes_exactly_that_param(
    gov: GovernanceParams, index: int, new: int
) -> None:
    param = param_names()[index]
    after = gov.apply_change(param, new)
    assert getattr(after, param) == new
    for other in param_names():
        if other != param:
            assert getattr(after, other) == getattr(gov, other)


@given(gov=governances, name=st.text(min_size=1, max_size=20))
def test_apply_change_of_unknown_param_names_it(gov: GovernanceParams, name: str) -> None:
    if name in param_names():
        return
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        gov.apply_change(name, 1)


def test_from_values_is_contract_order_and_checks_length() -> None:
    values = (3600, 500, 6000, 2, 96, 0xFAC7, OURS, OUR_CHAIN, 0x5EE)
    assert GovernanceParams.from_values(values) == governance()
    with pytest.raises(ValueError, match="returned 8 values, expected 9"):
        GovernanceParams.from_values(values[:8])


@pytest.mark.parametrize("bad", [-1, True, "5"])
def test_governance_values_must_be_non_negative_ints(bad: object) -> None:
    with pytest.raises(ValueError, match="drift_threshold_bps"):
        governance().apply_change("drift_threshold_bps", bad)  # type: ignore[arg-type]


# --- drift ---------------------------------------------------------------------------


def _same_length_pair(n: int) -> st.SearchStrategy[tuple[list[int], list[int]]]:
    return st.tuples(st.lists(bps, min_size=n, max_size=n), st.lists(bps, min_size=n, max_size=n))


@given(pair=st.integers(min_value=1, max_value=16).flatmap(_same_length_pair))
def test_drift_is_the_largest_single_move(pair: tuple[list[int], list[int]]) -> None:
    current, target = tuple(pair[0]), tuple(pair[1])
    drift = drift_bps(current, target)
    assert drift == drift_bps(target, current)
    assert all(abs(t - c) <= drift for c, t in zip(current, target, strict=True))
    assert any(abs(t - c) == drift for c, t in zip(current, target, strict=True))
    assert drift_bps(current, current) == 0


@given(current=allocations, target=allocations)
def test_drift_of_different_protocol_counts_is_maximal(
    current: tuple[int, ...], target: tuple[int, ...]
) -> None:
    if len(current) == len(target):
        return
    assert drift_bps(current, target) == BPS


@given(target=allocations)
def test_drift_without_a_current_allocation_is_maximal(target: tuple[int, ...]) -> None:
    assert drift_bps((), target) == BPS


# --- decide --------------------------------------------------------------------------


def _expected(
    snap: RouterSnapshot,
    now: int,
    requested: bool,
    model: tuple[int, ...] | None,
    open_epochs: frozenset[int],
) -> tuple[bool, str | None]:
    """The rule of the issue, written independently."""
    if snap.epoch in open_epochs:
        return False, None
    if requested:
        return True, "request"
    never = snap.last_execution_ts == 0
    if never or now - snap.last_execution_ts >= snap.governance.rebalance_interval_s:
        return True, "interval"
    if model is None:
        return False, None
    if len(model) != len(snap.allocation) or not snap.allocation:
        return True, "drift"
    moves = [abs(a - b) for a, b in zip(model, snap.allocation, strict=True)]
    if max(moves) > snap.governance.drift_threshold_bps or max(moves) == BPS:
        return True, "drift"
    return False, None


@given(
    gov=governances,
    epoch=st.integers(min_value=0, max_value=2**64 - 1),
    current=st.one_of(st.just(()), allocations),
    model=st.one_of(st.none(), allocations),
    last=st.one_of(st.just(0), st.integers(min_value=0, max_value=2**40)),
    now=st.integers(min_value=0, max_value=2**40),
    requested=st.booleans(),
    others=st.frozensets(st.integers(min_value=0, max_value=50), max_size=5),
    open_this=st.booleans(),
)
def test_decide_follows_the_rule(
    gov: GovernanceParams,
    epoch: int,
    current: tuple[int, ...],
    model: tuple[int, ...] | None,
    last: int,
    now: int,
    requested: bool,
    others: frozenset[int],
    open_this: bool,
) -> None:
    snap = RouterSnapshot(epoch, current, last, gov)
    open_epochs = others | {epoch} if open_this else others - {epoch}
    decision = decide(
        snap, now=now, requested=requested, model_allocation=model, open_job_epochs=open_epochs
    )
    assert (decision.due, decision.trigger) == _expected(snap, now, requested, model, open_epochs)
    assert decision.reason
    if open_this:
        assert not decision.due
        assert f"epoch {epoch} is already open" in decision.reason


def _snap(**kw: object) -> RouterSnapshot:
    values: dict[str, object] = {
        "epoch": 7,
        "allocation": (5000, 5000),
        "last_execution_ts": 1_000_000,
        "governance": governance(),
    }
    values.update(kw)
    return RouterSnapshot(**values)  # type: ignore[arg-type]


def _decide(snap: RouterSnapshot, **kw: object) -> Decision:
    args: dict[str, object] = {
        "now": 1_000_100,
        "requested": False,
        "model_allocation": (5000, 5000),
        "open_job_epochs": frozenset(),
    }
    args.update(kw)
    return decide(snap, **args)  # type: ignore[arg-type]


def test_request_beats_interval_and_drift() -> None:
    d = _decide(_snap(), now=10**9, requested=True, model_allocation=(0, 10000))
    assert (d.due, d.trigger) == (True, "request")


def test_interval_beats_drift() -> None:
    d = _decide(_snap(), now=1_003_600, model_allocation=(0, 10000))
    assert (d.due, d.trigger) == (True, "interval")
    assert "3600 s since the last execution" in d.reason


def test_interval_is_due_exactly_when_it_has_passed() -> None:
    assert not _decide(_snap(), now=1_003_599).due
    assert _decide(_snap(), now=1_003_600).trigger == "interval"


def test_never_executed_router_is_due_by_interval() -> None:
    d = _decide(_snap(last_execution_ts=0, allocation=()), now=100)
    assert (d.due, d.trigger) == (True, "interval")
    assert "never executed" in d.reason


def test_drift_threshold_is_exclusive() -> None:
    at_threshold = _decide(_snap(), model_allocation=(5500, 4500))
    assert not at_threshold.due
    assert "drift 500 bps within the threshold 500 bps" in at_threshold.reason
    above = _decide(_snap(), model_allocation=(5501, 4499))
    assert (above.due, above.trigger) == (True, "drift")


def test_infeasible_model_is_not_due_by_drift_and_says_so() -> None:
    d = _decide(_snap(allocation=()), model_allocation=None)
    assert not d.due
    assert "infeasible" in d.reason


def test_protocol_count_change_is_due_by_drift_even_at_the_maximum_threshold() -> None:
    snap = _snap(governance=governance(drift_threshold_bps=BPS))
    d = _decide(snap, model_allocation=(3000, 3000, 4000))
    assert (d.due, d.trigger) == (True, "drift")


def test_open_job_for_another_epoch_does_not_block() -> None:
    d = _decide(_snap(), requested=True, open_job_epochs=frozenset({6}))
    assert d.due


# --- accepted provers and halting ----------------------------------------------------


@given(
    gov=governances,
    policy=st.sampled_from(POLICIES),
)
def test_accepted_provers_follow_the_routers_hashes(gov: GovernanceParams, policy: str) -> None:
    gate = accepted_provers(gov, program_hash=OURS, child_program_hash=OUR_CHAIN, policy=policy)
    assert gate.direct == (gov.program_hash == OURS)
    assert gate.bootloaded == (gov.child_program_hash == OUR_CHAIN)
    expected = {
        "stone_then_atlantic": [p for p, ok in (("stone", gate.direct),
                                                ("atlantic", gate.bootloaded)) if ok],
        "stone_only": ["stone"] if gate.direct else [],
        "atlantic_only": ["atlantic"] if gate.bootloaded else [],
        "dev": ["dev"] if gate.direct else [],
    }[policy]
    assert list(gate.provers) == expected
    reason = halt_reason(gov, program_hash=OURS, child_program_hash=OUR_CHAIN, policy=policy)
    assert (reason is None) == bool(gate.provers)
    if reason is not None:
        assert "stopping" in reason
        assert gate.effective_policy is None


def test_zero_router_hash_accepts_nothing_even_for_a_zero_program() -> None:
    gov = governance(program_hash=0, child_program_hash=0)
    gate = accepted_provers(gov, program_hash=0, child_program_hash=0, policy="stone_then_atlantic")
    assert gate.provers == ()
    reason = halt_reason(gov, program_hash=OURS, child_program_hash=OUR_CHAIN,
                         policy="stone_then_atlantic")
    assert reason is not None
    assert "accepts no program yet" in reason
    assert hex(OURS) in reason and hex(OUR_CHAIN) in reason


def test_program_hash_change_halts_a_stone_keeper_and_names_both_hashes() -> None:
    gov = governance().apply_change("program_hash", 0x777)
    reason = halt_reason(gov, program_hash=OURS, child_program_hash=OUR_CHAIN, policy="stone_only")
    assert reason is not None
    assert reason.startswith(f"router accepts program hash 0x777 but this keeper runs {hex(OURS)}")
    assert "stopping: no proof" in reason
    assert "set prover.policy to atlantic_only" in reason  # the chain hash still matches


def test_stone_then_atlantic_narrows_to_the_accepted_prover() -> None:
    only_boot = governance(program_hash=0x777)
    gate = accepted_provers(only_boot, program_hash=OURS, child_program_hash=OUR_CHAIN,
                            policy="stone_then_atlantic")
    assert gate.provers == ("atlantic",)
    assert gate.effective_policy == "atlantic_only"
    assert gate.accepts("atlantic") and not gate.accepts("stone")
    only_direct = governance(child_program_hash=0x888)
    gate = accepted_provers(only_direct, program_hash=OURS, child_program_hash=OUR_CHAIN,
                            policy="stone_then_atlantic")
    assert gate.effective_policy == "stone_only"
    both = accepted_provers(governance(), program_hash=OURS, child_program_hash=OUR_CHAIN,
                            policy="stone_then_atlantic")
    assert both.effective_policy == "stone_then_atlantic"


def test_atlantic_keeper_with_wrong_chain_hash_halts() -> None:
    gov = governance(child_program_hash=0x888, program_hash=0x777)
    reason = halt_reason(gov, program_hash=OURS, child_program_hash=OUR_CHAIN,
                         policy="atlantic_only")
    assert reason is not None
    expected = f"child program hash 0x888 but this keeper's program hash chain is {hex(OUR_CHAIN)}"
    assert expected in reason
    assert "program hash 0x777" not in reason  # atlantic_only makes no direct proofs


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown prover policy 'fast'"):
        accepted_provers(governance(), program_hash=OURS, child_program_hash=OUR_CHAIN,
                         policy="fast")
